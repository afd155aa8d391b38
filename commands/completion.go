package commands

import (
	"context"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
)

type completeFunc = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective)

// completionState reads the state for completion; any problem means no
// suggestions rather than an error in the user's shell.
func completionState(env *Env, fn func(*core.App)) {
	_ = env.loadConfig()
	st, err := env.Store()
	if err != nil {
		return
	}
	_ = st.View(context.Background(), func(app *core.App) error { fn(app); return nil })
}

// vmNames lists qube names, optionally filtered.
func vmNames(app *core.App, keep func(*core.Domain) bool) []string {
	var out []string
	for _, d := range app.Domains() {
		if keep == nil || keep(d) {
			out = append(out, d.Name())
		}
	}
	return out
}

func completeVMs(env *Env, keep func(*core.Domain) bool) completeFunc {
	return func(_ *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		var out []string
		completionState(env, func(app *core.App) { out = vmNames(app, keep) })
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFirstVM completes VMNAME as the first argument only.
func completeFirstVM(env *Env, keep func(*core.Domain) bool) completeFunc {
	return func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return completeVMs(env, keep)(cmd, args, s)
	}
}

func completeLabels(env *Env) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var out []string
		completionState(env, func(app *core.App) {
			for _, l := range app.Labels {
				out = append(out, l.Name)
			}
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func completeClasses(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return core.CreatableClasses(), cobra.ShellCompDirectiveNoFileComp
}

func completePools(env *Env) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var out []string
		completionState(env, func(app *core.App) {
			for _, p := range app.Pools {
				out = append(out, p.Name)
			}
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completePrefsArgs: VMNAME, then its property names, then values for
// VM references and labels.
func completePrefsArgs(env *Env, o *prefsOptions) completeFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		var out []string
		completionState(env, func(app *core.App) {
			pos := len(args)
			var d *core.Domain
			if !o.global {
				if pos == 0 {
					out = vmNames(app, nil)
					return
				}
				var err error
				if d, err = app.Domain(args[0]); err != nil {
					return
				}
				pos--
			}
			props := core.Props(d)
			switch pos {
			case 0:
				for _, p := range props {
					if !p.Stateless {
						out = append(out, p.Name)
					}
				}
			case 1:
				name := strings.ReplaceAll(args[len(args)-1], "-", "_")
				for _, p := range props {
					if p.Name != name {
						continue
					}
					switch p.Kind {
					case core.KVM:
						out = append(vmNames(app, func(x *core.Domain) bool { return x.Class != "AdminVM" }), "none")
					case core.KLabel:
						for _, l := range app.Labels {
							out = append(out, l.Name)
						}
					case core.KBool:
						out = []string{"True", "False"}
					}
				}
			}
		})
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
