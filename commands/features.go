package commands

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
)

type featuresOptions struct{ unset bool }

func newFeaturesCmd(env *Env) *cobra.Command {
	var o featuresOptions
	cmd := &cobra.Command{
		Use:   "features [flags] VMNAME [FEATURE [VALUE]]",
		Short: "List, get, set or remove features of a qube",
		Long: `Without FEATURE lists all features; with FEATURE prints its value (exit 1
when it is not set); with VALUE sets it; with -D removes it.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runFeatures(cmd.Context(), env, o, args) },
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return completeVMs(env, nil)(cmd, args, s)
			}
			var out []string
			if len(args) == 1 {
				completionState(env, func(app *core.App) {
					if d, err := app.Domain(args[0]); err == nil {
						for _, f := range d.Features {
							out = append(out, f.Name)
						}
					}
				})
			}
			sort.Strings(out)
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	}
	for _, n := range []string{"unset", "default", "delete"} {
		cmd.Flags().BoolVar(&o.unset, n, false, "remove the feature")
	}
	cmd.Flags().BoolVarP(&o.unset, "D", "D", false, "remove the feature")
	cmd.Flags().Lookup("D").Hidden = true
	return cmd
}

func runFeatures(ctx context.Context, env *Env, o featuresOptions, args []string) error {
	if len(args) == 0 {
		return usagef("the following arguments are required: VMNAME")
	}
	if len(args) > 3 {
		return usagef("unrecognized arguments: %v", args[3:])
	}
	if o.unset && len(args) == 1 {
		return usagef("--unset requires a feature")
	}
	if o.unset && len(args) == 3 {
		return usagef("cannot both set and unset a value")
	}
	if len(args) == 3 || o.unset {
		return env.update(ctx, func(app *core.App) error {
			d, err := oneVM(app, args[0])
			if err != nil {
				return err
			}
			if o.unset {
				return app.DeleteFeature(d, args[1])
			}
			return app.SetFeature(d, args[1], args[2])
		})
	}
	return env.view(ctx, func(app *core.App) error {
		d, err := oneVM(app, args[0])
		if err != nil {
			return err
		}
		if len(args) == 2 {
			v, ok := d.Feature(args[1])
			if !ok {
				return &ExitError{Code: 1}
			}
			fmt.Fprintln(env.IO.Out, v)
			return nil
		}
		var rows [][]string
		for _, f := range d.Features {
			rows = append(rows, []string{f.Name, f.Value})
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
		printTable(env.IO.Out, rows)
		return nil
	})
}
