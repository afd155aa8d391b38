package commands

import (
	"context"

	"github.com/qvm-dev/qvm/core"
)

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
	app.PowerState = func(d *core.Domain) string {
		if s, ok := states[d.Name()]; ok {
			return string(s)
		}
		return "Halted"
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
