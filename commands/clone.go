package commands

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

type cloneOptions struct {
	class        string
	pool         string
	pools        []string
	ignoreErrors bool
}

func newCloneCmd(env *Env) *cobra.Command {
	var o cloneOptions
	cmd := &cobra.Command{
		Use:   "clone [flags] VMNAME NEWVM",
		Short: "Clone a qube: properties, tags, features, device assignments and volumes",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("the following arguments are required: VMNAME, NEWVM")
			}
			return runClone(cmd.Context(), env, o, args[0], args[1])
		},
		ValidArgsFunction: completeFirstVM(env, func(d *core.Domain) bool { return d.Class != "AdminVM" }),
	}
	f := cmd.Flags()
	f.StringVarP(&o.class, "class", "C", "", "class of the copy (default: the source's)")
	f.StringVarP(&o.pool, "pool-all", "P", "", "pool for all volumes")
	f.StringArrayVarP(&o.pools, "pool", "p", nil, "pool of one volume, VOLUME=POOL (repeatable)")
	f.BoolVar(&o.ignoreErrors, "ignore-errors", false, "continue past metadata errors")
	cmd.MarkFlagsMutuallyExclusive("pool-all", "pool")
	_ = cmd.RegisterFlagCompletionFunc("class", completeClasses)
	_ = cmd.RegisterFlagCompletionFunc("pool-all", completePools(env))
	return cmd
}

func runClone(ctx context.Context, env *Env, o cloneOptions, src, dst string) error {
	pools, err := parsePools(o.pools)
	if err != nil {
		return err
	}
	return env.update(ctx, func(app *core.App) error {
		s, err := oneVM(app, src)
		if err != nil {
			return err
		}
		if o.class != "" && !slices.Contains(core.CreatableClasses(), o.class) {
			return usagef("no such domain class: '%s'", o.class)
		}
		d, err := app.Clone(s, dst, core.CloneOpts{Class: o.class, Volumes: core.VolumeOpts{Pool: o.pool, Pools: pools}})
		if err != nil {
			return fmt.Errorf("%w", err)
		}
		// New volumes, then the data of the save_on_stop ones (reflink
		// within a filesystem, a thin snapshot within a thin pool, else
		// streamed). On failure all of it goes and qubes.xml is not written.
		st := storage.Open(app, env.storageOptions())
		if err := st.Create(ctx, d); err != nil {
			return err
		}
		if err := st.Clone(ctx, s, d); err != nil {
			if rerr := st.Remove(ctx, d); rerr != nil {
				env.warnf(env.progFor("qvm clone"), "cleanup of %s: %v", dst, rerr)
			}
			return err
		}
		return nil
	})
}
