package commands

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
)

type serviceOptions struct {
	list, enable, disable, unset bool
}

func newServiceCmd(env *Env) *cobra.Command {
	var o serviceOptions
	cmd := &cobra.Command{
		Use:   "service [flags] VMNAME [SERVICE [on|off]]",
		Short: "List or switch the services of a qube (features service.NAME)",
		RunE:  func(cmd *cobra.Command, args []string) error { return runService(cmd.Context(), env, o, args) },
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			switch len(args) {
			case 0:
				return completeVMs(env, nil)(cmd, args, s)
			case 2:
				return []string{"on", "off"}, cobra.ShellCompDirectiveNoFileComp
			}
			var out []string
			completionState(env, func(app *core.App) {
				if d, err := app.Domain(args[0]); err == nil {
					for _, f := range d.Features {
						if n, ok := strings.CutPrefix(f.Name, "service."); ok {
							out = append(out, n)
						}
					}
				}
			})
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.list, "list", "l", false, "list services")
	f.BoolVarP(&o.enable, "enable", "e", false, "enable the service")
	f.BoolVarP(&o.disable, "disable", "d", false, "disable the service")
	f.BoolVarP(&o.unset, "unset", "D", false, "remove the service setting (back to the qube's default)")
	f.BoolVar(&o.unset, "default", false, "same as --unset")
	f.BoolVar(&o.unset, "delete", false, "same as --unset")
	cmd.MarkFlagsMutuallyExclusive("enable", "disable", "unset")
	return cmd
}

func runService(ctx context.Context, env *Env, o serviceOptions, args []string) error {
	if len(args) == 0 {
		return usagef("the following arguments are required: VMNAME")
	}
	if len(args) > 3 {
		return usagef("unrecognized arguments: %v", args[3:])
	}
	if (o.unset || o.enable || o.disable) && len(args) == 1 {
		return usagef("--unset requires a feature")
	}
	if (o.unset || o.enable || o.disable) && len(args) == 3 {
		return usagef("cannot both set and unset a value")
	}
	if len(args) == 1 || (len(args) == 2 && !o.unset && !o.enable && !o.disable) {
		return env.view(ctx, func(app *core.App) error {
			d, err := oneVM(app, args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				v, ok := d.Feature("service." + args[1])
				if !ok {
					return &ExitError{Code: 1}
				}
				fmt.Fprintln(env.IO.Out, onOff(v))
				return nil
			}
			var rows [][]string
			for _, f := range d.Features {
				if n, ok := strings.CutPrefix(f.Name, "service."); ok {
					rows = append(rows, []string{n, onOff(f.Value)})
				}
			}
			sort.SliceStable(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
			printTable(env.IO.Out, rows)
			return nil
		})
	}
	value := ""
	switch {
	case o.enable:
		value = "1"
	case o.disable:
	case !o.unset:
		b, err := core.ParseBool(args[2])
		if err != nil {
			return &core.ValueError{Msg: fmt.Sprintf("Invalid literal for boolean value: '%s'", args[2])}
		}
		if b {
			value = "1"
		}
	}
	return env.update(ctx, func(app *core.App) error {
		d, err := oneVM(app, args[0])
		if err != nil {
			return err
		}
		if o.unset {
			return app.DeleteFeature(d, "service."+args[1])
		}
		return app.SetFeature(d, "service."+args[1], value)
	})
}

func onOff(v string) string {
	if v != "" {
		return "on"
	}
	return "off"
}
