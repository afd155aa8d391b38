package commands

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/storage"
)

type checkOptions struct {
	sel                                  vmSelection
	running, paused, template, networked bool
	format                               string
	removeOrphans                        bool
}

func newCheckCmd(env *Env) *cobra.Command {
	o := checkOptions{sel: vmSelection{required: true}}
	cmd := &cobra.Command{
		Use:   "check [flags] [--all [--exclude X]... | VMNAME...]",
		Short: "Check that qubes exist and match the given conditions",
		Long: `With qube names: exit code 0 when every named qube exists (and matches all
filters), 3 when some match, 1 when none match or a name does not exist.

Without names (as "qvm check", not as qvm-check): checks the whole state.
It lists references that qubes.xml should not hold (a netvm that does not
provide network, a volume used twice, a snapshot of a volume no qube has, a
kernel that is not installed, ...) and orphan files in the state directory
(temp files of interrupted writes, directories of qubes that do not exist),
one per line; exit code 1 when it finds any. --remove-orphans deletes the
orphan files it lists (temp files, staging directories of an interrupted
restore, stale lock files, directories of no qube) and exits 0 when nothing
else is left.`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runCheck(cmd.Context(), env, o, args) },
		ValidArgsFunction: completeVMs(env, nil),
	}
	o.sel.addFlags(env, cmd)
	f := cmd.Flags()
	f.BoolVar(&o.running, "running", false, "qubes must be running")
	f.BoolVar(&o.paused, "paused", false, "qubes must be paused")
	f.BoolVar(&o.template, "template", false, "qubes must be templates")
	f.BoolVar(&o.networked, "networked", false, "qubes must have network")
	f.StringVar(&o.format, "format", "text", "state check output: text or json")
	f.BoolVar(&o.removeOrphans, "remove-orphans", false, "state check: delete the orphan files found (under the exclusive lock); inconsistencies stay")
	return cmd
}

func runCheck(ctx context.Context, env *Env, o checkOptions, args []string) error {
	prog := env.progFor("qvm check")
	if !o.sel.all && len(args) == 0 {
		if env.Prog != "" || o.running || o.paused || o.template || o.networked {
			return usagef("one of the arguments --all VMNAME is required")
		}
		return runStateCheck(ctx, env, o)
	}
	return env.view(ctx, func(app *core.App) error {
		env.attachPowerStates(ctx, app, env.progFor("qvm check"))
		var doms []*core.Domain
		var missing []string
		if o.sel.all {
			var err error
			if doms, err = o.sel.resolve(app, nil); err != nil {
				return err
			}
		} else {
			for _, n := range args {
				if d, err := app.Domain(n); err == nil {
					doms = append(doms, d)
				} else {
					missing = append(missing, n)
				}
			}
		}
		sort.Slice(doms, func(i, j int) bool { return doms[i].Name() < doms[j].Name() })
		for _, n := range missing {
			env.warnf(prog, "%s: non-existent!", n)
		}
		var statuses []string
		if o.running {
			statuses = append(statuses, "running")
		}
		if o.paused {
			statuses = append(statuses, "paused")
		}
		if o.template {
			statuses = append(statuses, "template")
		}
		if o.networked {
			statuses = append(statuses, "networked")
		}
		match := func(d *core.Domain) bool {
			ps := powerState(app, d)
			if o.running && ps != "Running" {
				return false
			}
			if o.paused && ps != "Paused" {
				return false
			}
			if o.template && d.Class != "TemplateVM" {
				return false
			}
			if o.networked {
				pn, _ := app.Get(d, "provides_network")
				nv, err := app.Get(d, "netvm")
				if !pn.Bool() && (err != nil || nv.None) {
					return false
				}
			}
			return true
		}
		if len(statuses) == 0 {
			for _, d := range doms {
				env.infof(prog, "%s: exists", d.Name())
			}
			if len(missing) > 0 {
				return &ExitError{Code: 1}
			}
			return nil
		}
		var matched []*core.Domain
		for _, d := range doms {
			if match(d) {
				matched = append(matched, d)
			}
		}
		for _, d := range matched {
			env.infof(prog, "%s: %s", d.Name(), strings.Join(statuses, ", "))
		}
		switch {
		case len(missing) > 0:
			return &ExitError{Code: 1}
		case len(matched) == 0:
			env.infof(prog, "None of qubes: %s", strings.Join(statuses, ", "))
			return &ExitError{Code: 1}
		case len(matched) < len(doms):
			return &ExitError{Code: 3}
		}
		return nil
	})
}

// runStateCheck reports inconsistencies and orphan files of the whole state.
func runStateCheck(ctx context.Context, env *Env, o checkOptions) error {
	if o.format != "text" && o.format != "json" {
		return usagef("--format must be text or json, not %q", o.format)
	}
	st, err := env.Store()
	if err != nil {
		return err
	}
	var findings []core.Finding
	var qubes int
	scan := func(app *core.App) error {
		findings = append(app.Inconsistencies(), st.Orphans(app)...)
		findings = append(findings, st.Leftovers(app)...)
		findings = append(findings, storage.Open(app, env.storageOptions()).Orphans()...)
		qubes = len(app.Domains())
		return nil
	}
	if o.removeOrphans {
		// Under the exclusive lock no other qvm is half way through a
		// write, so every temp file found is really left over. The state
		// itself is not changed, so Update writes nothing.
		err = st.Update(ctx, func(app *core.App) error {
			if err := scan(app); err != nil {
				return err
			}
			removed, err := store.RemoveOrphans(findings)
			for _, p := range removed {
				fmt.Fprintf(env.IO.Out, "removed: %s\n", p)
			}
			if err != nil {
				return fmt.Errorf("remove orphan files: %w", err)
			}
			var rest []core.Finding
			for _, f := range findings {
				if f.Kind != "orphan" {
					rest = append(rest, f)
				}
			}
			findings = rest
			return nil
		})
	} else {
		err = st.View(ctx, scan)
	}
	if err != nil {
		return err
	}
	if o.format == "json" {
		if findings == nil {
			findings = []core.Finding{}
		}
		if err := writeJSON(env.IO.Out, findings); err != nil {
			return err
		}
	} else {
		for _, f := range findings {
			fmt.Fprintf(env.IO.Out, "%s: %s: %s\n", f.Kind, f.What, f.Msg)
		}
		if len(findings) == 0 {
			fmt.Fprintf(env.IO.Out, "ok: %d qubes, no inconsistencies, no orphan files\n", qubes)
		}
	}
	if len(findings) > 0 {
		return &ExitError{Code: 1}
	}
	return nil
}
