package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

func newVolumeCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume [list | info | config | resize | revert | import | clone | clear] ...",
		Short: "Manage qubes' volumes",
		Long: `Lists volumes and their revisions, shows and changes volume settings,
resizes, reverts to an older revision and imports data. Without a
subcommand lists all volumes. Errors print "Error: <msg>" and exit 1.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("invalid choice: '%s' (choose from 'list', 'info', 'config', 'resize', 'revert', 'import', 'clone', 'clear')", args[0])
			}
			return runVolumeList(cmd.Context(), env, volumeListOptions{sel: vmSelection{}}, nil)
		},
	}
	cmd.AddCommand(newVolumeListCmd(env), newVolumeInfoCmd(env), newVolumeConfigCmd(env), newVolumeResizeCmd(env),
		newVolumeRevertCmd(env), newVolumeImportCmd(env), newVolumeCloneCmd(env), newVolumeClearCmd(env))
	return cmd
}

// volErr is the stock tool's "Error: <msg>", exit 1.
func volErr(err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	var ue *UsageError
	if errors.As(err, &ee) || errors.As(err, &ue) {
		return err
	}
	return &ExitError{Code: 1, Msg: "Error: " + oneLine(err.Error()), Raw: true}
}

// volumeRef resolves a VM:VOLUME argument.
func volumeRef(app *core.App, st *storage.Storage, ref string) (*storage.Volume, error) {
	vm, vol, ok := strings.Cut(ref, ":")
	if !ok || vm == "" || vol == "" {
		return nil, usagef("expected a vm & volume combination like foo:bar")
	}
	d, err := app.Domain(vm)
	if err != nil {
		return nil, &ExitError{Code: 1, Msg: fmt.Sprintf("no vm '%s'", vm)}
	}
	if d.Volume(vol) == nil {
		return nil, &ExitError{Code: 1, Msg: fmt.Sprintf("vm '%s' has no volume '%s'", vm, vol)}
	}
	v, err := st.Volume(d, vol)
	if err != nil {
		return nil, volErr(err)
	}
	return v, nil
}

// completeVolumeRefs completes VM:VOLUME for the first argument.
func completeVolumeRefs(env *Env, keep func(*core.VolumeConfig) bool) completeFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		completionState(env, func(app *core.App) {
			for _, d := range app.Domains() {
				for _, v := range d.Volumes {
					if keep == nil || keep(v) {
						out = append(out, d.Name()+":"+v.Name)
					}
				}
			}
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

type volumeListOptions struct {
	sel   vmSelection
	pools []string
	full  bool
}

func newVolumeListCmd(env *Env) *cobra.Command {
	o := volumeListOptions{}
	cmd := &cobra.Command{
		Use:     "list [-p POOL]... [--full] [--all [--exclude X]... | VMNAME...]",
		Aliases: []string{"ls", "l"},
		Short:   "List volumes: pool:vid, qube, volume name, whether a revert is possible",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVolumeList(cmd.Context(), env, o, args)
		},
		ValidArgsFunction: completeVMs(env, func(d *core.Domain) bool { return d.IsQubesVM() }),
	}
	o.sel.addFlags(env, cmd)
	cmd.Flags().StringArrayVarP(&o.pools, "pool", "p", nil, "only volumes of this pool (repeatable)")
	cmd.Flags().BoolVar(&o.full, "full", false, "repeat the pool:vid of a volume shared by several qubes")
	_ = cmd.RegisterFlagCompletionFunc("pool", completePools(env))
	return cmd
}

func runVolumeList(ctx context.Context, env *Env, o volumeListOptions, args []string) error {
	return env.view(ctx, func(app *core.App) error {
		doms, err := o.sel.resolve(app, args)
		if err != nil {
			return err
		}
		var missing []string
		want := map[string]bool{}
		for _, p := range o.pools {
			if app.Pool(p) == nil {
				missing = append(missing, "'"+p+"'")
			}
			want[p] = true
		}
		if len(missing) > 0 {
			return volErr(fmt.Errorf("No such pools: [%s]", strings.Join(missing, ", ")))
		}
		st := storage.Open(app, env.storageOptions())
		type row struct{ pool, vid, vm, name, revert string }
		var rows []row
		used := map[string]bool{}
		for _, d := range doms {
			vols, err := st.Volumes(d)
			if err != nil {
				return volErr(err)
			}
			for _, v := range vols {
				used[v.Config.Pool+":"+v.Vid()] = true
				if len(want) > 0 && !want[v.Config.Pool] {
					continue
				}
				revs, _ := v.Revisions()
				r := row{v.Config.Pool, v.Vid(), d.Name(), v.Name(), "No"}
				if len(revs) > 0 {
					r.revert = "Yes"
				}
				rows = append(rows, r)
			}
		}
		// Kernels no qube uses are volumes of no domain.
		if len(args) == 0 {
			for _, p := range app.Pools {
				if p.Driver != "linux-kernel" || (len(want) > 0 && !want[p.Name]) {
					continue
				}
				vers, _ := storage.KernelVersions(p)
				for _, k := range vers {
					if !used[p.Name+":"+k] {
						rows = append(rows, row{pool: p.Name, vid: k})
					}
				}
			}
		}
		sort.SliceStable(rows, func(i, j int) bool {
			if rows[i].pool != rows[j].pool {
				return rows[i].pool < rows[j].pool
			}
			return rows[i].vid < rows[j].vid
		})
		table := [][]string{{"POOL:VOLUME", "VMNAME", "VOLUME_NAME", "REVERT_POSSIBLE"}}
		for i, r := range rows {
			first := r.pool + ":" + r.vid
			if r.vm == "" {
				table = append(table, []string{first, ""})
				continue
			}
			if i > 0 && rows[i-1].pool == r.pool && rows[i-1].vid == r.vid && env.IO.IsTTY && !o.full {
				first = ""
			}
			table = append(table, []string{first, r.vm, r.name, r.revert})
		}
		printTable(env.IO.Out, table)
		return nil
	})
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// volumeInfo is the client's info table, in its order.
func volumeInfo(v *storage.Volume) [][]string {
	rtk := strconv.FormatInt(v.Config.RevisionsToKeep, 10)
	if v.Config.RevisionsToKeep == -1 {
		rtk = "-1 (snapshot disabled)"
	}
	rows := [][]string{
		{"pool", v.Config.Pool}, {"vid", v.Vid()}, {"rw", pyBool(v.Config.RW)}, {"source", v.Config.Source},
		{"save_on_stop", pyBool(v.Config.SaveOnStop)}, {"snap_on_start", pyBool(v.Config.SnapOnStart)},
		{"size", strconv.FormatInt(v.Size(), 10)}, {"usage", strconv.FormatInt(v.Usage(), 10)},
		{"revisions_to_keep", rtk}, {"ephemeral", pyBool(v.Ephemeral())},
	}
	if out, known := v.IsOutdated(); known {
		rows = append(rows, []string{"is_outdated", pyBool(out)})
	} else {
		rows = append(rows, []string{"is_outdated", ""})
	}
	return rows
}

func newVolumeInfoCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:     "info VM:VOLUME [PROPERTY]",
		Aliases: []string{"i"},
		Short:   "Show a volume's settings and revisions, or one property",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("the following arguments are required: VM:VOLUME")
			}
			return env.view(cmd.Context(), func(app *core.App) error {
				v, err := volumeRef(app, storage.Open(app, env.storageOptions()), args[0])
				if err != nil {
					return err
				}
				revs, err := v.Revisions()
				if err != nil {
					return volErr(err)
				}
				info := volumeInfo(v)
				if len(args) == 2 {
					switch args[1] {
					case "revisions":
						for _, r := range revs {
							fmt.Fprintln(env.IO.Out, r.ID)
						}
						return nil
					case "revisions_to_keep":
						fmt.Fprintln(env.IO.Out, v.Config.RevisionsToKeep)
						return nil
					case "path":
						fmt.Fprintln(env.IO.Out, v.Path())
						return nil
					}
					for _, r := range info {
						if r[0] == args[1] {
							fmt.Fprintln(env.IO.Out, r[1])
							return nil
						}
					}
					return volErr(fmt.Errorf("No such property: %s", args[1]))
				}
				printTable(env.IO.Out, info)
				if len(revs) == 0 {
					fmt.Fprintln(env.IO.Out, "List of available revisions (for revert): none")
				} else {
					fmt.Fprintln(env.IO.Out, "List of available revisions (for revert):")
					for _, r := range revs {
						fmt.Fprintf(env.IO.Out, "  %s\n", r.ID)
					}
				}
				return nil
			})
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return []string{"pool", "vid", "rw", "source", "save_on_stop", "snap_on_start", "size", "usage",
					"revisions_to_keep", "ephemeral", "is_outdated", "revisions", "path"}, cobra.ShellCompDirectiveNoFileComp
			}
			return completeVolumeRefs(env, nil)(cmd, args, s)
		},
	}
}

// anyRunning: the qube or (for a disposable template) one of its
// disposables is running, judged by the volumes' running markers.
func anyRunning(app *core.App, st *storage.Storage, d *core.Domain) bool {
	for _, o := range app.Domains() {
		if o != d {
			if t, err := app.Get(o, "template"); err != nil || t.None || t.S != d.Name() || o.Class != "DispVM" {
				continue
			}
		}
		vols, _ := st.Volumes(o)
		for _, v := range vols {
			if v.Running() {
				return true
			}
		}
	}
	return false
}

// setVolumeProperty applies qvm volume config's rules (spec §3.9, §3.10).
func setVolumeProperty(app *core.App, st *storage.Storage, v *storage.Volume, prop, value string) error {
	kernel := v.Pool.Driver == "linux-kernel"
	name := v.Domain.Name()
	switch prop {
	case "rw":
		b, err := core.ParseBool(value)
		if err != nil {
			return err
		}
		if v.Running() {
			return fmt.Errorf("Domain is not powered off: %s", name)
		}
		if kernel && b {
			return fmt.Errorf("LinuxModules volume %s cannot be read-write", v.Vid())
		}
		v.Config.RW = b
	case "revisions_to_keep":
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil || n < -1 {
			return fmt.Errorf("Invalid value for revisions_to_keep")
		}
		switch {
		case kernel && n != 0:
			return fmt.Errorf("LinuxModules supports only revisions_to_keep=0")
		case v.Pool.Driver == "file" && n > 1:
			return fmt.Errorf("FileVolume supports maximum 1 volume revision to keep")
		}
		if (n == -1) != (v.Config.RevisionsToKeep == -1) && anyRunning(app, st, v.Domain) {
			return fmt.Errorf("Domain is not powered off: %s", name)
		}
		v.Config.RevisionsToKeep = n
	case "ephemeral":
		b, err := core.ParseBool(value)
		if err != nil {
			return err
		}
		if kernel {
			return fmt.Errorf("LinuxModules volume does not support ephemeral")
		}
		if b && (v.Config.SnapOnStart || v.Config.SaveOnStop || !v.Config.RW) {
			return fmt.Errorf("Cannot enable ephemeral on snap_on_start or save_on_stop or non-dom0 or not writable volume")
		}
		v.Config.Ephemeral = &b
	default:
		return fmt.Errorf("Invalid property: %s", prop)
	}
	return nil
}

func newVolumeConfigCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "config VM:VOLUME PROPERTY VALUE",
		Aliases: []string{"c", "set", "s"},
		Short:   "Set rw, revisions_to_keep or ephemeral of a volume",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 3 {
				return usagef("the following arguments are required: VM:VOLUME, PROPERTY, VALUE")
			}
			return env.update(cmd.Context(), func(app *core.App) error {
				st := storage.Open(app, env.storageOptions())
				v, err := volumeRef(app, st, args[0])
				if err != nil {
					return err
				}
				return volErr(setVolumeProperty(app, st, v, args[1], args[2]))
			})
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			switch len(args) {
			case 1:
				return []string{"rw", "revisions_to_keep", "ephemeral"}, cobra.ShellCompDirectiveNoFileComp
			case 2:
				if args[1] == "rw" || args[1] == "ephemeral" {
					return []string{"True", "False"}, cobra.ShellCompDirectiveNoFileComp
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeVolumeRefs(env, nil)(cmd, args, s)
		},
	}
	// VALUE may be negative (revisions_to_keep -1): no flags after VM:VOLUME.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// parseSize is the stock parse_size: bytes, or K/KB/M/MB/G/GB (powers of
// 1000) and Ki/KiB/Mi/MiB/Gi/GiB (powers of 1024), case-insensitive.
func parseSize(s string) (int64, error) {
	in := strings.ToUpper(strings.TrimSpace(s))
	bad := fmt.Errorf("Invalid size: %s.", in)
	units := []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KI", 1 << 10}, {"MI", 1 << 20}, {"GI", 1 << 30},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"", 1}}
	for _, u := range units {
		num, ok := strings.CutSuffix(in, u.suffix)
		if !ok {
			continue
		}
		num = strings.TrimSpace(num)
		if num == "" || strings.Trim(num, "0123456789") != "" {
			return 0, bad
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/u.mult {
			return 0, bad
		}
		return n * u.mult, nil
	}
	return 0, bad
}

func newVolumeResizeCmd(env *Env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "resize [-f] VM:VOLUME SIZE",
		Aliases: []string{"extend"},
		Short:   "Resize a volume (shrinking needs --force)",
		Long: `Sets the volume size. SIZE is bytes or a number with K, M, G (powers of
1000) or Ki, Mi, Gi (powers of 1024). A smaller size is refused unless
--force is given, since the end of the volume is cut off. Growing a
snapshot volume (an AppVM's root) lasts only until the qube stops.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("the following arguments are required: VM:VOLUME, SIZE")
			}
			size, err := parseSize(args[1])
			if err != nil {
				return usagef("%s", err)
			}
			return env.update(cmd.Context(), func(app *core.App) error {
				v, err := volumeRef(app, storage.Open(app, env.storageOptions()), args[0])
				if err != nil {
					return err
				}
				if cur := v.Size(); size < cur && !force {
					return &ExitError{Code: 1, Raw: true, Msg: fmt.Sprintf("Error: Refusing to shrink volume %s from %d to %d bytes.\n"+
						"Shrinking cuts off the end of the volume: first shrink the filesystem inside the qube. "+
						"Then use 'qvm-volume resize --force %s %d'", args[0], cur, size, args[0], size)}
				}
				if err := v.Resize(cmd.Context(), size); err != nil {
					return volErr(err)
				}
				if v.Running() {
					env.warnf(env.progFor("qvm volume resize"), "%s is running: grow the filesystem inside the qube (qubes.ResizeDisk is not run by qvm)", v.Domain.Name())
				}
				return nil
			})
		},
		ValidArgsFunction: completeVolumeRefs(env, func(v *core.VolumeConfig) bool { return v.RW }),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "allow shrinking")
	return cmd
}

func newVolumeRevertCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:     "revert VM:VOLUME [REVISION]",
		Aliases: []string{"rv", "r"},
		Short:   "Revert a volume to a revision (default: the newest)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("the following arguments are required: VM:VOLUME")
			}
			rev := ""
			if len(args) == 2 {
				rev = args[1]
			}
			return env.update(cmd.Context(), func(app *core.App) error {
				v, err := volumeRef(app, storage.Open(app, env.storageOptions()), args[0])
				if err != nil {
					return err
				}
				if v.Running() {
					return volErr(fmt.Errorf("Domain is not powered off: %s", v.Domain.Name()))
				}
				return volErr(v.Revert(cmd.Context(), rev))
			})
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				var out []string
				completionState(env, func(app *core.App) {
					if v, err := volumeRef(app, storage.Open(app, env.storageOptions()), args[0]); err == nil {
						revs, _ := v.Revisions()
						for _, r := range revs {
							out = append(out, r.ID)
						}
					}
				})
				return out, cobra.ShellCompDirectiveNoFileComp
			}
			return completeVolumeRefs(env, func(v *core.VolumeConfig) bool { return v.SaveOnStop })(cmd, args, s)
		},
	}
}

// countingReader reports read bytes to a progress.
type countingReader struct {
	r io.Reader
	p progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Add(int64(n))
	return n, err
}

func newVolumeImportCmd(env *Env) *cobra.Command {
	var sizeFlag string
	var noResize bool
	cmd := &cobra.Command{
		Use:   "import [--size N | --no-resize] VM:VOLUME PATH|-",
		Short: "Replace a volume's data with a file or stdin",
		Long: `Replaces the volume's data with PATH (or stdin for -). The volume takes
the size of the input unless --size gives it or --no-resize keeps the
current size (then the input must be exactly that long). The qube must be
halted; the old data is kept as a revision where the pool keeps
revisions. Shows progress on a terminal.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("the following arguments are required: VM:VOLUME, PATH")
			}
			if sizeFlag != "" && noResize {
				return usagef("argument --no-resize: not allowed with argument --size")
			}
			var in io.Reader
			var inFile *os.File
			if args[1] == "-" {
				in = env.IO.In
				if f, ok := env.IO.In.(*os.File); ok {
					inFile = f
				}
			} else {
				f, err := os.Open(args[1])
				if err != nil {
					return volErr(err)
				}
				defer f.Close()
				in, inFile = f, f
			}
			size := int64(-1)
			if sizeFlag != "" {
				n, err := strconv.ParseInt(sizeFlag, 10, 64)
				if err != nil || n < 0 {
					return usagef("argument --size: invalid int value: '%s'", sizeFlag)
				}
				size = n
			} else if !noResize {
				fi, err := statInput(inFile)
				if err != nil {
					return volErr(fmt.Errorf("Failed to get size of %s (%v): use --size or --no-resize", args[1], err))
				}
				size = fi
			}
			return env.update(cmd.Context(), func(app *core.App) error {
				v, err := volumeRef(app, storage.Open(app, env.storageOptions()), args[0])
				if err != nil {
					return err
				}
				if size < 0 {
					size = v.Size()
				}
				mode := progressAuto
				if !env.IO.ErrIsTTY {
					mode = progressOff
				}
				p := newProgress(env, mode, "Importing", size)
				p.Label(args[0])
				err = v.Import(cmd.Context(), &countingReader{in, p}, size)
				p.Done()
				return volErr(err)
			})
		},
		ValidArgsFunction: completeVolumeRefs(env, func(v *core.VolumeConfig) bool { return v.SaveOnStop }),
	}
	cmd.Flags().StringVar(&sizeFlag, "size", "", "size of the data in bytes")
	cmd.Flags().BoolVar(&noResize, "no-resize", false, "keep the volume size; the data must be exactly that long")
	return cmd
}

// statInput is the size of a regular file given as input (a pipe has none).
func statInput(f *os.File) (int64, error) {
	if f == nil {
		return 0, errors.New("not a file")
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, errors.New("not a regular file")
	}
	return fi.Size(), nil
}

func newVolumeCloneCmd(env *Env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "clone [-f] SRC_VM:VOLUME DST_VM:VOLUME",
		Short: "Replace a volume's data with another volume's",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("the following arguments are required: SRC_VM:VOLUME, DST_VM:VOLUME")
			}
			if !force {
				fmt.Fprintf(env.IO.Err, "This will replace the content of %s with the content of %s.\n", args[1], args[0])
				fmt.Fprintln(env.IO.Err, "The old content is kept only as a revision, where the pool keeps revisions.")
				if !strings.EqualFold(confirm(env, "Are you sure? [y/N] "), "y") {
					return &ExitError{Code: 1, Msg: "Clone cancelled.", Raw: true}
				}
			}
			return env.update(cmd.Context(), func(app *core.App) error {
				st := storage.Open(app, env.storageOptions())
				src, err := volumeRef(app, st, args[0])
				if err != nil {
					return err
				}
				dst, err := volumeRef(app, st, args[1])
				if err != nil {
					return err
				}
				if !src.Config.SaveOnStop || !dst.Config.SaveOnStop {
					return volErr(fmt.Errorf("Volumes must be save_on_stop for cloning"))
				}
				if dst.Running() {
					return volErr(fmt.Errorf("Domain is not powered off: %s", dst.Domain.Name()))
				}
				return volErr(st.CloneVolume(cmd.Context(), dst, src))
			})
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			return completeVolumeRefs(env, func(v *core.VolumeConfig) bool { return v.SaveOnStop })(cmd, nil, s)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return cmd
}

func newVolumeClearCmd(env *Env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "clear [-f] VM:VOLUME",
		Short: "Empty a volume (all zeroes)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("the following arguments are required: VM:VOLUME")
			}
			if !force {
				fmt.Fprintf(env.IO.Err, "This will erase all data of %s.\n", args[0])
				fmt.Fprintln(env.IO.Err, "The old content is kept only as a revision, where the pool keeps revisions.")
				if !strings.EqualFold(confirm(env, "Are you sure? [y/N] "), "y") {
					return &ExitError{Code: 1, Msg: "Clear cancelled.", Raw: true}
				}
			}
			return env.update(cmd.Context(), func(app *core.App) error {
				v, err := volumeRef(app, storage.Open(app, env.storageOptions()), args[0])
				if err != nil {
					return err
				}
				return volErr(v.Clear(cmd.Context()))
			})
		},
		ValidArgsFunction: completeVolumeRefs(env, func(v *core.VolumeConfig) bool { return v.SaveOnStop }),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return cmd
}
