package main

import (
	"os/exec"
	"strings"
	"testing"
)

// qvm never links libvirt: loading libvirt.so costs every process about
// 15 ms and 15 MiB, and the embedded driver stays loaded in its process.
// The hypervisor calls go through qvm-virt (core/virt). The one cgo
// package allowed is libdeflate's (a small library without dependencies,
// about five times faster at inflating a restore's gzip members).
func TestNoLibvirt(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, ncgo, _ := strings.Cut(l, " ")
		if strings.Contains(path, "libvirt") {
			t.Errorf("qvm imports %s", path)
		}
		if ncgo != "0" && strings.HasPrefix(path, "github.com/qvm-dev/qvm/") && path != "github.com/qvm-dev/qvm/backup/internal/libdeflate" {
			t.Errorf("qvm imports %s, which uses cgo", path)
		}
	}
}
