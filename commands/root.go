package commands

import (
	"log/slog"

	"github.com/spf13/cobra"
)

func newRootCmd(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "qvm",
		Short: "Administer Qubes qubes from dom0",
		Long: `qvm administers Qubes OS qubes by working directly on the state files
(qubes.xml, volumes, firewall rules). It accepts the stock qvm-* tools'
options; invoked as qvm-prefs, qvm-ls, ... it behaves as that tool.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Version:           version,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := env.loadConfig(); err != nil {
				return err
			}
			level := slog.LevelWarn
			switch v := env.Verbosity(); {
			case v >= 2:
				level = slog.LevelDebug
			case v == 1:
				level = slog.LevelInfo
			}
			env.log = slog.New(slog.NewTextHandler(env.IO.Err, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.String("state-dir", "/var/lib/qubes", "Qubes state directory (env QVM_STATE_DIR)")
	pf.String("lock-timeout", "30s", "how long to wait for the qubes.xml lock (env QVM_LOCK_TIMEOUT)")
	pf.String("connect", "", "libvirt URI (env QVM_LIBVIRT_URI; default: xen, a running libvirtd, else the embedded QEMU driver)")
	_ = env.cfg.BindPFlag("libvirt-uri", pf.Lookup("connect"))
	pf.CountVarP(&env.verbose, "verbose", "v", "increase verbosity")
	pf.CountVarP(&env.quiet, "quiet", "q", "decrease verbosity")
	_ = env.cfg.BindPFlag("state-dir", pf.Lookup("state-dir"))
	_ = env.cfg.BindPFlag("lock-timeout", pf.Lookup("lock-timeout"))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Msg: err.Error()} })

	root.AddCommand(
		newInitCmd(env),
		newCreateCmd(env),
		newCloneCmd(env),
		newRemoveCmd(env),
		newLsCmd(env),
		newPrefsCmd(env),
		newFeaturesCmd(env),
		newServiceCmd(env),
		newTagsCmd(env),
		newCheckCmd(env),
		newPoolCmd(env),
		newFirewallCmd(env),
		newBackupCmd(env),
		newRestoreCmd(env),
		newVolumeCmd(env),
		newDeviceCmd(env),
		newStartCmd(env),
		newShutdownCmd(env),
		newKillCmd(env),
		newPauseCmd(env, false),
		newPauseCmd(env, true),
		newGenDocsCmd(env, root),
	)
	return root
}

// version is set by the build (-ldflags "-X ...version=...").
var version = "0.1.0-dev"
