module github.com/qvm-dev/qvm

go 1.26
