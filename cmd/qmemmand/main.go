// Command qmemmand balances memory between running qubes.
package main

import (
	"os"

	"github.com/qvm-dev/qvm/memd/qmemmand"
)

func main() {
	os.Exit(qmemmand.Main(os.Args, qmemmand.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
