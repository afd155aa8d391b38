package commands

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
)

type shutdownOptions struct {
	sel     vmSelection
	wait    bool
	timeout string
	force   bool
	dryRun  bool
}

func newShutdownCmd(env *Env) *cobra.Command {
	o := shutdownOptions{sel: vmSelection{required: true}}
	cmd := &cobra.Command{
		Use:   "shutdown [flags] [--all [--exclude X]... | VMNAME...]",
		Short: "Shut qubes down gracefully",
		Long: `Asks qubes to power off (the ACPI power button on QEMU, the PV shutdown
request on Xen). With --wait it waits up to each qube's shutdown_timeout,
retries once and then kills. A qube other running qubes depend on is refused
unless --force (--all implies --force unless --exclude is given). The exit
code is the number of qubes that failed.`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runShutdown(cmd.Context(), env, o, args) },
		ValidArgsFunction: completeVMs(env, func(d *core.Domain) bool { return d.IsQubesVM() }),
	}
	o.sel.addFlags(env, cmd)
	f := cmd.Flags()
	f.BoolVar(&o.wait, "wait", false, "wait until the qubes are halted")
	f.StringVar(&o.timeout, "timeout", "", "deprecated: any value just enables --wait (the qube's shutdown_timeout applies)")
	f.BoolVar(&o.force, "force", false, "shut down even if other qubes depend on it")
	f.BoolVar(&o.dryRun, "dry-run", false, "do nothing")
	return cmd
}

// shutdownRound sends the shutdown requests of one round and returns the
// failures (name → error) and the deadlines of the qubes asked to halt.
func (env *Env) shutdownRound(ctx context.Context, names []string, force bool) (map[string]error, map[string]time.Time, error) {
	fails := map[string]error{}
	deadlines := map[string]time.Time{}
	err := env.update(ctx, func(app *core.App) error {
		h, err := env.openHV(ctx, app)
		if err != nil {
			return err
		}
		defer h.close()
		for _, n := range names {
			d, err := app.Domain(n)
			if err != nil {
				continue // removed meanwhile (auto_cleanup): nothing to shut down
			}
			err = h.requestShutdown(ctx, d, force)
			var nr *NotRunningError
			switch {
			case errors.As(err, &nr):
			case err != nil:
				fails[n] = err
			default:
				to, _ := app.Get(d, "shutdown_timeout")
				secs := to.Int()
				if secs <= 0 {
					secs = 60
				}
				deadlines[n] = time.Now().Add(time.Duration(secs) * time.Second)
			}
		}
		return nil
	})
	return fails, deadlines, err
}

func runShutdown(ctx context.Context, env *Env, o shutdownOptions, args []string) error {
	env.needVirt = !o.dryRun
	wait := o.wait || o.timeout != ""
	if o.timeout != "" {
		env.warnf(env.progFor("qvm shutdown"), "--timeout is deprecated; it only enables --wait (each qube's shutdown_timeout applies)")
	}
	force := o.force || (o.sel.all && len(o.sel.exclude) == 0)
	var names []string
	err := env.view(ctx, func(app *core.App) error {
		doms, err := o.sel.resolve(app, args)
		if err != nil {
			return err
		}
		for _, d := range doms {
			names = append(names, d.Name())
		}
		return nil
	})
	if err != nil || o.dryRun {
		return err
	}

	failures := map[string]error{}
	var timedOut []string
	// round asks and (with --wait) waits; it fills failures and timedOut.
	round := func(targets []string) error {
		fails, deadlines, err := env.shutdownRound(ctx, targets, force)
		if err != nil {
			return err
		}
		for _, n := range targets {
			delete(failures, n)
		}
		for n, e := range fails {
			failures[n] = e
		}
		if wait && len(deadlines) > 0 {
			late, err := env.waitHalted(ctx, deadlines)
			if err != nil {
				return err
			}
			for _, n := range late {
				failures[n] = fmt.Errorf("Domain shutdown timed out: '%s'", n)
				timedOut = append(timedOut, n)
			}
			// Handle the stops now (storage commit, disposables), not lazily.
			if err := env.reconcileNow(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	if err := round(names); err != nil {
		return err
	}

	inUse := func() []string {
		var out []string
		for _, n := range names {
			var iu *InUseError
			if errors.As(failures[n], &iu) {
				out = append(out, n)
			}
		}
		return out
	}
	if busy := inUse(); len(busy) > 0 {
		env.printErr("Retrying shutdown of qubes that were in use for %d time(s)", len(busy))
		for i, n := 0, len(busy); i < n && len(busy) > 0; i++ {
			before := len(failures)
			env.printErr("Retrying shutdown of qubes that were in use: %s", strings.Join(busy, ", "))
			if err := round(busy); err != nil {
				return err
			}
			if len(failures) == before {
				break
			}
			busy = inUse()
		}
	}
	if len(timedOut) > 0 {
		late := timedOut
		timedOut = nil
		sort.Strings(late)
		env.printErr("Retrying shutdown of qubes that timed out: %s", strings.Join(late, ", "))
		if err := round(late); err != nil {
			return err
		}
		if len(timedOut) > 0 {
			sort.Strings(timedOut)
			env.printErr("Killing timed out qubes: %s", strings.Join(timedOut, ", "))
			kfails, err := env.killQubes(ctx, timedOut)
			if err != nil {
				return err
			}
			for _, n := range timedOut {
				if e, ok := kfails[n]; ok {
					failures[n] = e
				} else {
					delete(failures, n)
				}
			}
		}
	}
	failed := 0
	for _, n := range names {
		if e, ok := failures[n]; ok {
			env.printErr("Failed to shut down: %s: %s", n, oneLine(e.Error()))
			failed++
		}
	}
	if failed > 0 {
		return &ExitError{Code: failed}
	}
	return nil
}

// killQubes destroys the named qubes; not-running ones count as done.
func (env *Env) killQubes(ctx context.Context, names []string) (map[string]error, error) {
	fails := map[string]error{}
	err := env.update(ctx, func(app *core.App) error {
		h, err := env.openHV(ctx, app)
		if err != nil {
			return err
		}
		defer h.close()
		for _, n := range names {
			d, err := app.Domain(n)
			if err != nil {
				continue
			}
			var nr *NotRunningError
			if err := h.kill(ctx, d); err != nil && !errors.As(err, &nr) {
				fails[n] = err
			}
		}
		return nil
	})
	return fails, err
}

type killOptions struct{ sel vmSelection }

func newKillCmd(env *Env) *cobra.Command {
	o := killOptions{sel: vmSelection{required: true}}
	cmd := &cobra.Command{
		Use:   "kill [flags] [--all [--exclude X]... | VMNAME...]",
		Short: "Kill qubes at once",
		Long: `Destroys qubes at once (no shutdown inside the guest), then stops their
storage as after any stop. Halted qubes are ignored. The exit code is the
number of qubes that could not be killed.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			env.needVirt = true
			var names []string
			err := env.view(cmd.Context(), func(app *core.App) error {
				doms, err := o.sel.resolve(app, args)
				for _, d := range doms {
					names = append(names, d.Name())
				}
				return err
			})
			if err != nil {
				return err
			}
			fails, err := env.killQubes(cmd.Context(), names)
			if err != nil {
				return err
			}
			for _, n := range names {
				if e, ok := fails[n]; ok {
					env.printErr("Failed to kill: %s: %s", n, oneLine(e.Error()))
				}
			}
			if len(fails) > 0 {
				return &ExitError{Code: len(fails)}
			}
			return nil
		},
		ValidArgsFunction: completeVMs(env, func(d *core.Domain) bool { return d.IsQubesVM() }),
	}
	o.sel.addFlags(env, cmd)
	return cmd
}

// newPauseCmd builds qvm pause and qvm unpause.
func newPauseCmd(env *Env, unpause bool) *cobra.Command {
	sel := vmSelection{required: true}
	verb, short, what := "pause", "Pause running qubes", "pause"
	if unpause {
		verb, short, what = "unpause", "Resume paused qubes", "unpause"
	}
	cmd := &cobra.Command{
		Use:   verb + " [flags] [--all [--exclude X]... | VMNAME...]",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			env.needVirt = true
			failed := 0
			err := env.update(cmd.Context(), func(app *core.App) error {
				doms, err := sel.resolve(app, args)
				if err != nil {
					return err
				}
				h, err := env.openHV(cmd.Context(), app)
				if err != nil {
					return err
				}
				defer h.close()
				for _, d := range doms {
					var err error
					switch {
					case d.Class == "AdminVM":
						err = fmt.Errorf("Cannot %s Dom0 fake domain!", what)
					case !h.state(d).Active():
						err = fmt.Errorf("Domain is powered off: '%s'", d.Name())
					case unpause:
						err = h.conn.Resume(cmd.Context(), d.Name())
					default:
						err = h.conn.Suspend(cmd.Context(), d.Name())
					}
					if err != nil {
						if sel.all && !h.state(d).Active() {
							continue // --all: only the running ones
						}
						env.printErr("Failed to %s: %s: %s", what, d.Name(), oneLine(err.Error()))
						failed++
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if failed > 0 {
				return &ExitError{Code: failed}
			}
			return nil
		},
		ValidArgsFunction: completeVMs(env, func(d *core.Domain) bool { return d.IsQubesVM() }),
	}
	sel.addFlags(env, cmd)
	return cmd
}
