package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

type createOptions struct {
	class       string
	standalone  bool
	disp        bool
	props       []string
	template    string
	label       string
	pool        string
	pools       []string
	helpClasses bool
	rootCopy    string
	rootMove    string
	noRoot      bool
}

func newCreateCmd(env *Env) *cobra.Command {
	var o createOptions
	cmd := &cobra.Command{
		Use:   "create [flags] -l LABEL VMNAME",
		Short: "Create a new qube",
		Long: `Creates a qube of the given class (default AppVM) with a label. Extra
properties are set after creation with --prop NAME=VALUE; if one fails the
qube stays created and the exit code is 2.`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runCreate(cmd.Context(), env, o, args) },
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	f := cmd.Flags()
	f.StringVarP(&o.class, "class", "C", "AppVM", "class of the new qube")
	f.BoolVar(&o.standalone, "standalone", false, "create a StandaloneVM")
	f.BoolVar(&o.disp, "disp", false, "create a DispVM (label defaults to red)")
	f.StringArrayVar(&o.props, "prop", nil, "set a property after creation, NAME=VALUE (repeatable)")
	f.StringArrayVar(&o.props, "property", nil, "same as --prop")
	f.StringVarP(&o.template, "template", "t", "", "template of the new qube")
	f.StringVarP(&o.label, "label", "l", "", "label of the new qube (mandatory)")
	f.StringVarP(&o.pool, "pool-all", "P", "", "pool for all volumes")
	f.StringArrayVarP(&o.pools, "pool", "p", nil, "pool of one volume, VOLUME=POOL (repeatable)")
	f.BoolVar(&o.helpClasses, "help-classes", false, "list the classes and exit")
	f.StringVarP(&o.rootCopy, "root-copy-from", "r", "", "import FILE into the root volume (size = file size)")
	f.StringVarP(&o.rootMove, "root-move-from", "R", "", "as --root-copy-from, then delete FILE")
	f.BoolVar(&o.noRoot, "no-root", false, "ignored (stock compatibility)")
	_ = f.MarkHidden("no-root")
	cmd.MarkFlagsMutuallyExclusive("pool-all", "pool")
	cmd.MarkFlagsMutuallyExclusive("root-copy-from", "root-move-from")
	_ = cmd.RegisterFlagCompletionFunc("class", completeClasses)
	_ = cmd.RegisterFlagCompletionFunc("label", completeLabels(env))
	_ = cmd.RegisterFlagCompletionFunc("template", completeVMs(env, func(d *core.Domain) bool {
		return d.Class == "TemplateVM" || d.Class == "AppVM"
	}))
	_ = cmd.RegisterFlagCompletionFunc("pool-all", completePools(env))
	return cmd
}

// parsePools reads -p VOLUME=POOL options.
func parsePools(list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range list {
		vol, pool, ok := strings.Cut(p, "=")
		if !ok || vol == "" || pool == "" {
			return nil, usagef("Pool argument must be of form: -p volume_name=pool_name")
		}
		out[vol] = pool
	}
	return out, nil
}

func runCreate(ctx context.Context, env *Env, o createOptions, args []string) error {
	if o.helpClasses {
		for _, c := range core.CreatableClasses() {
			fmt.Fprintln(env.IO.Out, c)
		}
		return nil
	}
	class := o.class
	switch {
	case o.standalone:
		class = "StandaloneVM"
	case o.disp:
		class = "DispVM"
		if o.label == "" {
			o.label = "red"
		}
	}
	if len(args) > 1 {
		return usagef("unrecognized arguments: %s", strings.Join(args[1:], " "))
	}
	if o.label == "" {
		return usagef("--label option is mandatory")
	}
	if len(args) == 0 && class != "DispVM" {
		return usagef("VMNAME is mandatory")
	}
	pools, err := parsePools(o.pools)
	if err != nil {
		return err
	}
	rootFile := o.rootCopy + o.rootMove
	if rootFile != "" {
		if fi, err := os.Stat(rootFile); err != nil || !fi.Mode().IsRegular() {
			return usagef("File pointed by --root-copy-from/--root-move-from does not exist")
		}
		if class == "AppVM" || class == "DispVM" {
			return usagef("--root-copy-from/--root-move-from used but this qube does not have own 'root' volume (uses template's one)")
		}
	}
	type kv struct{ k, v string }
	var props []kv
	for _, p := range o.props {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return usagef("Invalid property token: '%s'", p)
		}
		props = append(props, kv{strings.ReplaceAll(k, "-", "_"), v})
	}
	name := ""
	if len(args) == 1 {
		name = args[0]
	}
	prog := env.progFor("qvm create")
	var propErr, rootErr error
	err = env.update(ctx, func(app *core.App) error {
		if !slices.Contains(core.CreatableClasses(), class) {
			return usagef("no such domain class: '%s'", class)
		}
		if _, err := app.Label(o.label); err != nil {
			var names []string
			for _, l := range app.Labels {
				names = append(names, l.Name)
			}
			return usagef("no such label: '%s'; available: %s", o.label, strings.Join(names, ", "))
		}
		d, err := app.Create(core.CreateOpts{Class: class, Name: name, Label: o.label, Template: o.template,
			Volumes: core.VolumeOpts{Pool: o.pool, Pools: pools}})
		if err != nil {
			var ue *UsageError
			if errors.As(err, &ue) {
				return err
			}
			return &ExitError{Code: 1, Msg: fmt.Sprintf("%s: Error creating VM: %s", prog, err), Raw: true}
		}
		// The volumes are made before qubes.xml is written: a failure
		// removes them again and the state is not saved.
		if err := storage.Open(app, env.storageOptions()).Create(ctx, d); err != nil {
			return &ExitError{Code: 1, Msg: fmt.Sprintf("%s: Error creating VM: %s", prog, err), Raw: true}
		}
		for _, p := range props {
			var perr error
			if isVMRef(d, p.k) && isNoneWord(p.v) {
				perr = app.SetNone(d, p.k)
			} else {
				perr = app.Set(d, p.k, p.v)
			}
			if perr != nil {
				// The reference keeps the qube and reports exit code 2.
				propErr = &ExitError{Code: 2, Msg: fmt.Sprintf("%s: Error setting property %s (but VM created): %s", prog, p.k, perr), Raw: true}
				break
			}
		}
		if rootFile != "" && propErr == nil {
			if err := importRoot(ctx, env, app, d, rootFile); err != nil {
				rootErr = &ExitError{Code: 3, Msg: fmt.Sprintf("%s: Error importing root volume (but VM created): %s", prog, err), Raw: true}
			}
		}
		if name == "" {
			fmt.Fprintln(env.IO.Out, d.Name())
		}
		return nil
	})
	if err != nil {
		return err
	}
	if propErr != nil {
		return propErr
	}
	if rootErr == nil && o.rootMove != "" {
		if err := os.Remove(o.rootMove); err != nil {
			env.warnf(prog, "%v", err)
		}
	}
	return rootErr
}

// importRoot fills a new qube's root volume from a file (-r/-R); the volume
// takes the file's size.
func importRoot(ctx context.Context, env *Env, app *core.App, d *core.Domain, path string) error {
	v, err := storage.Open(app, env.storageOptions()).Volume(d, "root")
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return v.Import(ctx, f, fi.Size())
}
