// Package qmemmand is the qmemmand command line: the daemon (config,
// socket, balancing loop, systemd readiness, SIGTERM) and `qmemmand algo`,
// the offline entry point to the algorithm.
package qmemmand

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/memd"
	"github.com/qvm-dev/qvm/memd/virtclient"
)

// IO is the command's streams.
type IO struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

type usageError struct{ error }

// Main runs qmemmand with argv and returns the exit code: 0, 1 on errors,
// 2 on a bad command line.
func Main(argv []string, stdio IO) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	root := newRoot(stdio)
	root.SetArgs(argv[1:])
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stdio.Err, "qmemmand: error: %v\n", err)
	var ue usageError
	// cobra reports a stray argument only as text.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "accepts ") {
		return 2
	}
	return 1
}

type daemonOptions struct {
	config     string
	foreground bool
	socket     string
	runDir     string
	uri        string
	stateDir   string
	interval   time.Duration
	verbose    bool
	budget     string
	helper     string
}

// findHelper locates qmemmand-virt: the flag, else beside this executable,
// else on PATH.
func findHelper(flag string) (string, error) {
	if flag != "" {
		if _, err := os.Stat(flag); err != nil {
			return "", fmt.Errorf("--helper: %w", err)
		}
		return flag, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "qmemmand-virt")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("qmemmand-virt")
	if err != nil {
		return "", fmt.Errorf("the libvirt helper qmemmand-virt is not installed beside qmemmand nor on PATH (use --helper)")
	}
	return p, nil
}

func newRoot(stdio IO) *cobra.Command {
	var o daemonOptions
	cmd := &cobra.Command{
		Use:   "qmemmand",
		Short: "Balance memory between running qubes",
		Long: `qmemmand keeps every running domain near its preferred memory (what it
uses times cache-margin-factor) by setting balloon targets through libvirt,
and frees memory on request before a qube starts (socket protocol of the
reference qmemman). Logs go to stderr (the journal under systemd).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), stdio, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", memd.DefaultConfigPath, "configuration file")
	f.BoolVarP(&o.foreground, "foreground", "f", false, "accepted for compatibility: logs always go to stderr")
	f.StringVar(&o.socket, "socket", memd.DefaultSocket, "Unix socket to answer requests on")
	f.StringVar(&o.runDir, "run-dir", "/var/run/qubes", "directory of qmemman-avail-mem and do-not-membalance")
	f.StringVar(&o.uri, "uri", os.Getenv("QVM_LIBVIRT_URI"), "libvirt URI (default: as qvm chooses: xen, qemu:///system, or the embedded driver)")
	f.StringVar(&o.stateDir, "state-dir", envOr("QVM_STATE_DIR", "/var/lib/qubes"), "Qubes state directory (root of the embedded driver)")
	f.DurationVar(&o.interval, "interval", time.Second, "time between balancing passes (passes also follow domain events)")
	f.StringVar(&o.budget, "budget", "", "memory to share between the domains (e.g. 8GiB) instead of the host's free memory")
	f.StringVar(&o.helper, "helper", "", "path of qmemmand-virt, the libvirt helper (default: beside qmemmand, else on PATH)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log at debug level")
	cmd.AddCommand(newAlgoCmd(stdio))
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newAlgoCmd(stdio IO) *cobra.Command {
	var input, config string
	cmd := &cobra.Command{
		Use:   "algo --input FILE|-",
		Short: "Run the balancing algorithm on a JSON description of domains",
		Long: `algo reads {"xen_free_mem": N, "domains": [...], "balloon_sizes": [...]}
(bytes; domain fields as the reference's DomainState) and prints pref_mem and
needed_mem per domain, mem_info, the balance result and branch, one balloon
result per size, and whether the balance is significant for Xen free memory
xen_free_mem + 50 MiB. Where the reference raises (division by zero), that
entry is {"error": "..."}. Constants are the built-in ones unless --config
names a qmemman.conf.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" {
				return usageError{errors.New("--input FILE or --input - is required")}
			}
			params := memd.DefaultParams()
			if config != "" {
				c, err := memd.LoadConfig(config)
				if err != nil {
					return err
				}
				params = c.Params
			}
			var r io.Reader = stdio.In
			if input != "-" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			xenFree, doms, sizes, err := memd.DecodeAlgoInput(r)
			if err != nil {
				return err
			}
			_, err = stdio.Out.Write(params.RunAlgo(xenFree, doms, sizes))
			return err
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "input JSON file, - for stdin")
	cmd.Flags().StringVarP(&config, "config", "c", "", "take the constants from this qmemman.conf")
	return cmd
}

func runDaemon(ctx context.Context, stdio IO, o daemonOptions) error {
	cfg, err := memd.LoadConfig(o.config)
	if err != nil {
		return err
	}
	level := cfg.SlogLevel()
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stdio.Err, &slog.HandlerOptions{Level: level}))
	log.Info("starting", "vm-min-mem", cfg.Params.MinPrefMem, "dom0-mem-boost", cfg.Params.Dom0MemBoost, "cache-margin-factor", cfg.Params.CacheFactor)

	var budget int64
	if o.budget != "" {
		if budget, err = memd.ParseSize(o.budget); err != nil || budget <= 0 {
			return usageError{fmt.Errorf("--budget %q: want a positive size (e.g. 8GiB)", o.budget)}
		}
	}
	helper, err := findHelper(o.helper)
	if err != nil {
		return err
	}
	// A short wait for the embedded root: a qvm command keeps it until it
	// exits, and passes skip while one does.
	host := virtclient.New(virtclient.Options{Argv: []string{helper}, URI: o.uri, StateDir: o.stateDir, Budget: budget, LockTimeout: 10 * time.Second})
	defer host.Close()
	log.Info("hypervisor", "uri", o.uri, "helper", helper)
	if err := os.MkdirAll(o.runDir, 0o755); err != nil {
		return err
	}
	d := memd.NewDaemon(host, memd.Options{Params: cfg.Params, RunDir: o.runDir, Logger: log})

	if err := os.Remove(o.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(o.socket), 0o755); err != nil {
		return err
	}
	l, err := net.Listen("unix", o.socket)
	if err != nil {
		return err
	}
	// World-accessible, as the reference's umask 0 makes it.
	if err := os.Chmod(o.socket, 0o666); err != nil {
		l.Close()
		return err
	}
	defer os.Remove(o.socket)
	return d.Run(ctx, l, memd.RunOptions{Interval: o.interval, Ready: func() {
		if err := memd.SdNotify("READY=1"); err != nil {
			log.Warn("sd_notify", "err", err)
		}
	}})
}
