package commands

import "github.com/qvm-dev/qvm/core"

// powerState is the power state column of qvm ls and the --running filters.
// Until qvm talks to the hypervisor (libvirt), only dom0 is known to run and
// every other qube reads as Halted.
func powerState(_ *core.App, d *core.Domain) string {
	if d.Class == "AdminVM" {
		return "Running"
	}
	return "Halted"
}
