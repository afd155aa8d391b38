package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

type removeOptions struct {
	sel   vmSelection
	force bool
}

func newRemoveCmd(env *Env) *cobra.Command {
	o := removeOptions{sel: vmSelection{required: true}}
	cmd := &cobra.Command{
		Use:   "remove [flags] [--all [--exclude X]... | VMNAME...]",
		Short: "Remove qubes",
		Long: `Removes qubes after a confirmation (skip it with -f). A qube that others
depend on (template, netvm, global defaults, …) is not removed; the
dependencies are listed.`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runRemove(cmd.Context(), env, o, args) },
		ValidArgsFunction: completeVMs(env, func(d *core.Domain) bool { return d.Class != "AdminVM" }),
	}
	o.sel.addFlags(env, cmd)
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "do not ask for confirmation")
	return cmd
}

func runRemove(ctx context.Context, env *Env, o removeOptions, args []string) error {
	prog := env.progFor("qvm remove")
	// Resolve and confirm under a shared lock, then remove under the exclusive one.
	var names []string
	err := env.view(ctx, func(app *core.App) error {
		doms, err := o.sel.resolve(app, args)
		if err != nil {
			return err
		}
		for _, d := range doms {
			if d.Class == "AdminVM" {
				return &ExitError{Code: 1, Msg: "Domain 'dom0' cannot be removed.", Raw: true}
			}
			names = append(names, d.Name())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	if !o.force {
		if o.sel.all && len(o.sel.exclude) == 0 {
			fmt.Fprintln(env.IO.Err, "WARNING!!! Removing all domains may leave your system in an unrecoverable state!")
			if confirm(env, "Are you certain? [N/IKNOWWHATIAMDOING]") != "IKNOWWHATIAMDOING" {
				return &ExitError{Code: 1, Msg: "Remove cancelled.", Raw: true}
			}
		} else {
			fmt.Fprintln(env.IO.Err, "This will completely remove the selected VM(s)...")
			for _, n := range names {
				fmt.Fprintf(env.IO.Out, "  %s\n", n)
			}
			if !strings.EqualFold(confirm(env, "Are you sure? [y/N] "), "y") {
				return &ExitError{Code: 1, Msg: "Remove cancelled.", Raw: true}
			}
		}
	}
	var removed []*core.Domain
	err = env.update(ctx, func(app *core.App) error {
		for _, n := range names {
			d, err := app.Domain(n)
			if err != nil {
				return err
			}
			if err := app.Remove(d); err != nil {
				var iu *core.InUseError
				if errors.As(err, &iu) && len(iu.Deps) > 0 {
					fmt.Fprintf(env.IO.Err, "VM %s cannot be removed. It is in use as:\n", n)
					for _, dep := range iu.Deps {
						if dep.Holder == "" {
							fmt.Fprintf(env.IO.Err, " - global property %s\n", dep.Property)
						} else {
							fmt.Fprintf(env.IO.Err, " - %s for %s\n", dep.Property, dep.Holder)
						}
					}
				}
				return &ExitError{Code: 1, Msg: fmt.Sprintf("%s: error: %s", prog, err), Raw: true}
			}
			removed = append(removed, d)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return removeVolumes(ctx, env, removed)
}

// removeVolumes deletes the data of removed qubes once qubes.xml no longer
// lists them: a crash in between leaves unused files (qvm check reports
// them), never a qube whose disks are gone. It runs under the lock again
// and skips a name that a concurrent qvm create has taken meanwhile.
func removeVolumes(ctx context.Context, env *Env, removed []*core.Domain) error {
	if len(removed) == 0 {
		return nil
	}
	return env.update(ctx, func(app *core.App) error {
		st := storage.Open(app, env.storageOptions())
		var first error
		for _, d := range removed {
			if _, err := app.Domain(d.Name()); err == nil {
				continue
			}
			if err := st.Remove(ctx, d); err != nil {
				env.warnf(env.progFor("qvm remove"), "removing the volumes of %s: %v", d.Name(), err)
				if first == nil {
					first = err
				}
			}
		}
		return first
	})
}
