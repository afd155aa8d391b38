package commands

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

type initOptions struct {
	reflink string // auto, yes, no
}

func newInitCmd(env *Env) *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a fresh qubes.xml and state directory",
		Long: `Creates the state directory with the initial state of a fresh Qubes
install: the eight standard labels, dom0, the varlibqubes pool (file-reflink
when the filesystem supports reflinks, else file) and the linux-kernel pool.
--reflink yes insists on file-reflink and fails, as the pool's set-up check
does, on a filesystem without reflinks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInit(cmd.Context(), env, o) },
	}
	cmd.Flags().StringVar(&o.reflink, "reflink", "auto", "varlibqubes driver: auto (probe), yes (file-reflink), no (file)")
	return cmd
}

func runInit(ctx context.Context, env *Env, o initOptions) error {
	dir := env.StateDir()
	for _, sub := range []string{"", "appvms", "vm-templates", "vm-kernels"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Join(dir, sub), err)
		}
	}
	var reflink bool
	switch o.reflink {
	case "auto":
		reflink = storage.ReflinkSupported(dir)
	case "yes":
		// The pool's own set-up check: refuse a filesystem without reflinks.
		p := &core.PoolConfig{Name: "varlibqubes", Driver: "file-reflink", Opts: []core.Opt{{Key: "dir_path", Value: dir}}}
		if err := storage.Setup(ctx, p, env.storageOptions()); err != nil {
			return err
		}
		reflink = true
	case "no":
	default:
		return usagef("--reflink must be auto, yes or no, not %q", o.reflink)
	}
	st, err := env.Store()
	if err != nil {
		return err
	}
	app := core.NewInitial(dir, st.Host, reflink)
	if err := st.Create(ctx, app); err != nil {
		return err
	}
	driver := app.Pool("varlibqubes").Driver
	fmt.Fprintf(env.IO.Out, "Initialized Qubes state in %s (pool varlibqubes: %s)\n", dir, driver)
	return nil
}
