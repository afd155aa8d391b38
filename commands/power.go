package commands

import (
	"context"
	"os"
	"path/filepath"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/virt"
)

// qrexecDir holds the qrexec daemons' sockets on a Qubes host.
const qrexecDir = "/var/run/qubes"

// powerState is the power state column of qvm ls and the --running
// filters: the hypervisor's answer when the command asked for it (see
// attachPowerStates), else dom0 runs and every other qube is Halted.
func powerState(app *core.App, d *core.Domain) string {
	if d.Class == "AdminVM" {
		return "Running"
	}
	if app.PowerState != nil {
		return app.PowerState(d)
	}
	return "Halted"
}

// attachPowerStates asks the hypervisor once for all domains and makes
// powerState answer from that. Without any volume-running marker no qube
// can be running (a start always starts the storage first), so the
// hypervisor is not even asked. A hypervisor that cannot be reached is a
// warning; the states then read Halted.
func (env *Env) attachPowerStates(ctx context.Context, app *core.App, prog string) {
	if app.PowerState != nil || !env.runMarkers() {
		return
	}
	conn, err := env.virt(ctx)
	if err != nil {
		env.warnf(prog, "power states unknown: %v", err)
		return
	}
	states, err := conn.States(ctx)
	if err != nil {
		env.warnf(prog, "power states unknown: %v", err)
		return
	}
	xen := conn.Driver() == "xen"
	app.PowerState = func(d *core.Domain) string {
		s, ok := states[d.Name()]
		if !ok {
			return "Halted"
		}
		// On Xen a running qube is "fully usable" (Running) only once its
		// qrexec daemon is up, as the reference shows it; QEMU/KVM qubes
		// have no qrexec, so running is all there is.
		if xen && s == virt.Running {
			if _, err := os.Stat(filepath.Join(qrexecDir, "qrexec."+d.Name())); err != nil {
				return string(virt.Transient)
			}
		}
		return string(s)
	}
	app.IsRunning = func(d *core.Domain) bool {
		_, ok := states[d.Name()]
		return ok
	}
}

// withPowerStates runs fn with the power states attached, so core's rules
// that depend on a qube running (remove, template change, ...) see them.
func (env *Env) withPowerStates(ctx context.Context, fn func(*core.App) error) func(*core.App) error {
	return func(app *core.App) error {
		env.attachPowerStates(ctx, app, "qvm")
		return fn(app)
	}
}
