package commands

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

type poolLegacy struct {
	add, info, list, remove, set, helpDrivers bool
	opts                                      string
}

func newPoolCmd(env *Env) *cobra.Command {
	var legacy poolLegacy
	cmd := &cobra.Command{
		Use:   "pool [list | drivers | info POOL | add POOL DRIVER [-o K=V]... | set POOL -o K=V... | remove POOL...]",
		Short: "Manage storage pools",
		Long: `Lists, adds, changes and removes storage pools. Without a subcommand lists
the pools. The stock legacy options (-a, -i, -l, -r, -s, --help-drivers with
-o k=v,k=v) are accepted too.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if legacy.add || legacy.info || legacy.list || legacy.remove || legacy.set || legacy.helpDrivers {
				return runPoolLegacy(cmd.Context(), env, legacy, args)
			}
			if len(args) > 0 {
				return usagef("unknown subcommand %q", args[0])
			}
			return runPoolList(cmd.Context(), env)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&legacy.add, "add", "a", false, "legacy: add POOL DRIVER")
	f.BoolVarP(&legacy.info, "info", "i", false, "legacy: info POOL")
	f.BoolVarP(&legacy.list, "list", "l", false, "legacy: list")
	f.BoolVarP(&legacy.remove, "remove", "r", false, "legacy: remove POOL")
	f.BoolVarP(&legacy.set, "set", "s", false, "legacy: set POOL")
	f.BoolVar(&legacy.helpDrivers, "help-drivers", false, "legacy: list drivers")
	f.StringVarP(&legacy.opts, "option", "o", "", "legacy: options as k=v,k=v")
	for _, n := range []string{"add", "info", "list", "remove", "set", "help-drivers", "option"} {
		_ = f.MarkHidden(n)
	}

	poolArg := func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		return completePools(env)(cmd, args, s)
	}
	var opts []string
	add := &cobra.Command{Use: "add POOL DRIVER [-o KEY=VALUE]...", Aliases: []string{"a"}, Short: "Add a pool",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("the following arguments are required: POOL_NAME, DRIVER")
			}
			return runPoolAdd(cmd.Context(), env, args[0], args[1], opts)
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return core.Drivers(), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}}
	add.Flags().StringArrayVarP(&opts, "option", "o", nil, "driver option KEY=VALUE (repeatable)")
	var setOpts []string
	set := &cobra.Command{Use: "set POOL -o KEY=VALUE...", Aliases: []string{"s"}, Short: "Change revisions_to_keep or ephemeral_volatile",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("the following arguments are required: POOL_NAME")
			}
			return runPoolSet(cmd.Context(), env, args[0], setOpts)
		}, ValidArgsFunction: poolArg}
	set.Flags().StringArrayVarP(&setOpts, "option", "o", nil, "KEY=VALUE (repeatable)")
	cmd.AddCommand(
		&cobra.Command{Use: "list", Aliases: []string{"l", "ls"}, Short: "List pools", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return runPoolList(cmd.Context(), env) }},
		&cobra.Command{Use: "drivers", Aliases: []string{"d"}, Short: "List drivers and their options", Args: cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error { printDrivers(env); return nil }},
		&cobra.Command{Use: "info POOL", Aliases: []string{"i"}, Short: "Show a pool's settings", ValidArgsFunction: poolArg,
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) != 1 {
					return usagef("the following arguments are required: POOL_NAME")
				}
				return runPoolInfo(cmd.Context(), env, args[0])
			}},
		add, set,
		&cobra.Command{Use: "remove POOL...", Aliases: []string{"r", "rm"}, Short: "Remove pools no volume uses", ValidArgsFunction: poolArg,
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return usagef("the following arguments are required: POOL_NAME")
				}
				return runPoolRemove(cmd.Context(), env, args)
			}},
	)
	return cmd
}

func runPoolList(ctx context.Context, env *Env) error {
	return env.view(ctx, func(app *core.App) error {
		rows := [][]string{{"NAME", "DRIVER"}}
		for _, p := range app.Pools {
			rows = append(rows, []string{p.Name, p.Driver})
		}
		printTable(env.IO.Out, rows)
		return nil
	})
}

func printDrivers(env *Env) {
	rows := [][]string{{"DRIVER", "OPTIONS"}}
	for _, d := range core.Drivers() {
		var names []string
		for _, p := range core.DriverParams(d) {
			names = append(names, p.Name)
		}
		rows = append(rows, []string{d, strings.Join(names, ", ")})
	}
	printTable(env.IO.Out, rows)
}

func runPoolInfo(ctx context.Context, env *Env, name string) error {
	return env.view(ctx, func(app *core.App) error {
		p := app.Pool(name)
		if p == nil {
			return fmt.Errorf("No such pool %s", name)
		}
		items := map[string]string{"driver": p.Driver}
		for _, o := range p.Opts {
			items[o.Key] = o.Value
		}
		if u := storage.Open(app, env.storageOptions()).Usage(ctx, p); u.Known {
			items["size"] = strconv.FormatInt(u.Size, 10)
			items["usage"] = strconv.FormatInt(u.Usage, 10)
		}
		if in := storage.IncludedIn(app, p); in != "" {
			items["included_in"] = in
		}
		keys := make([]string, 0, len(items))
		for k := range items {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		rows := [][]string{{"name", p.Name}}
		for _, k := range keys {
			rows = append(rows, []string{k, items[k]})
		}
		printTable(env.IO.Out, rows)
		return nil
	})
}

func parseOpts(list []string) ([]core.Opt, error) {
	var out []core.Opt
	for _, o := range list {
		k, v, ok := strings.Cut(o, "=")
		if !ok || k == "" {
			return nil, usagef("option must be KEY=VALUE, got %q", o)
		}
		out = append(out, core.Opt{Key: k, Value: v})
	}
	return out, nil
}

func runPoolAdd(ctx context.Context, env *Env, name, driver string, list []string) error {
	opts, err := parseOpts(list)
	if err != nil {
		return err
	}
	return env.update(ctx, func(app *core.App) error {
		p, err := app.AddPool(name, driver, opts)
		if err != nil {
			return fmt.Errorf("Failed to add pool %s: %w", name, err)
		}
		if err := setupPool(ctx, env, p); err != nil {
			return fmt.Errorf("Failed to add pool %s: %w", name, err)
		}
		// setup_check is a one-time switch; it is not kept in qubes.xml.
		for i, o := range p.Opts {
			if o.Key == "setup_check" {
				p.Opts = append(p.Opts[:i], p.Opts[i+1:]...)
				break
			}
		}
		return nil
	})
}

// setupPool prepares what a new pool needs on disk (storage.Setup).
func setupPool(ctx context.Context, env *Env, p *core.PoolConfig) error {
	return storage.Setup(ctx, p, env.storageOptions())
}

func runPoolSet(ctx context.Context, env *Env, name string, list []string) error {
	opts, err := parseOpts(list)
	if err != nil {
		return err
	}
	if len(opts) == 0 {
		return usagef("set needs at least one -o KEY=VALUE")
	}
	return env.update(ctx, func(app *core.App) error {
		p := app.Pool(name)
		if p == nil {
			return fmt.Errorf("No such pool %s", name)
		}
		for _, o := range opts {
			if err := app.SetPoolOption(p, o.Key, o.Value); err != nil {
				return err
			}
		}
		return nil
	})
}

func runPoolRemove(ctx context.Context, env *Env, names []string) error {
	var errs []string
	err := env.update(ctx, func(app *core.App) error {
		for _, n := range names {
			if app.Pool(n) == nil {
				errs = append(errs, fmt.Sprintf("No such pool %s", n))
				continue
			}
			if err := app.RemovePool(n); err != nil {
				errs = append(errs, fmt.Sprintf("Failed to remove pool %s: %s", n, err))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func runPoolLegacy(ctx context.Context, env *Env, l poolLegacy, args []string) error {
	var opts []string
	if l.opts != "" {
		opts = strings.Split(l.opts, ",")
	}
	switch {
	case l.helpDrivers:
		printDrivers(env)
		return nil
	case l.list:
		return runPoolList(ctx, env)
	case l.info && len(args) == 1:
		return runPoolInfo(ctx, env, args[0])
	case l.add && len(args) == 2:
		return runPoolAdd(ctx, env, args[0], args[1], opts)
	case l.remove && len(args) == 1:
		return runPoolRemove(ctx, env, args)
	case l.set && len(args) == 1:
		return runPoolSet(ctx, env, args[0], opts)
	}
	return usagef("legacy options: -a NAME DRIVER, -i NAME, -l, -r NAME, -s NAME -o k=v,k=v, --help-drivers")
}
