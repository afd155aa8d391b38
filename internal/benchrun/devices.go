package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/qvm-dev/qvm/internal/stategen"
)

// benchDevices: device listing over the fixture PCI tree and the host's
// sysfs, and an assign/unassign pair that rewrites a 1000-qube qubes.xml.
func benchDevices(r *runner) (string, error) {
	dir := filepath.Join(r.tmp, "devices1000")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	app, err := stategen.Generate(dir, 1000)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "qubes.xml"), app.Marshal(), 0o660); err != nil {
		return "", err
	}
	fixture, err := filepath.Abs("core/devices/testdata/sysfs/sys")
	if err != nil {
		return "", err
	}
	env := []string{"QVM_STATE_DIR=" + dir, "QVM_CONFIG=/nonexistent"}
	fx := append(append([]string(nil), env...), "QVM_SYSFS_ROOT="+fixture)
	npci := count(filepath.Join("/sys/bus/pci/devices"))
	nblk := count("/sys/block")
	rows := []struct {
		name string
		env  []string
		args func(int) []string
	}{
		{"`qvm device pci list` (fixture tree, 11 devices)", fx, func(int) []string { return []string{r.qvm, "device", "pci", "list"} }},
		{"`qvm device pci list -s --with-sbdf` (fixture tree)", fx, func(int) []string { return []string{r.qvm, "device", "pci", "list", "-s", "--with-sbdf"} }},
		{fmt.Sprintf("`qvm device pci list` (this host, %d devices, pci.ids names)", npci), env, func(int) []string { return []string{r.qvm, "device", "pci", "list"} }},
		{fmt.Sprintf("`qvm device block list` (this host, %d entries in /sys/block)", nblk), env, func(int) []string { return []string{r.qvm, "device", "block", "list"} }},
		{"`qvm device usb list` (this host)", env, func(int) []string { return []string{r.qvm, "device", "usb", "list"} }},
		{"`qvm device pci assign -r` / `unassign` in turn (rewrites qubes.xml)", fx, func(i int) []string {
			if i%2 == 0 {
				return []string{r.qvm, "device", "pci", "assign", "-r", "qube-0500", "dom0:00_18.4"}
			}
			return []string{r.qvm, "device", "pci", "unassign", "qube-0500", "dom0:00_18.4"}
		}},
	}
	if p, err := exec.LookPath("lsblk"); err == nil {
		rows = append(rows, struct {
			name string
			env  []string
			args func(int) []string
		}{"`lsblk` (util-linux, for scale)", env, func(int) []string { return []string{p} }})
	}
	var b strings.Builder
	b.WriteString("State: 1000 qubes (internal/stategen); pci.ids from Debian's `pci.ids` package when installed.\n\n")
	b.WriteString("| command | wall time (median) | peak RSS |\n|---|---|---|\n")
	for _, row := range rows {
		res, err := r.measure(row.env, row.args)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row.name, ms(res.median), mib(res.maxRSS))
	}
	b.WriteString("\nReference: the stock `qvm-pci`/`qvm-block` go through qubesd (and, for PCI, libvirt's node devices); they cannot run on this machine, so there is no side-by-side figure.\n")
	return b.String(), nil
}

func count(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}
