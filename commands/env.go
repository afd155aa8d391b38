package commands

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/core/virt"
)

// Env is what every command gets: IO, clock, settings and access to state.
type Env struct {
	IO   IO
	Now  func() time.Time
	Prog string // argv[0] alias, when invoked through one
	cfg  *viper.Viper
	log  *slog.Logger
	// verbosity is -v count minus -q count; 1 is the default.
	verbose, quiet int
	// noQmemmanNoted: "qmemmand is not running" was said once already.
	noQmemmanNoted bool
	// reconciling: the lazy stop handling is running (no recursion).
	reconciling bool
	// vconn is the process's hypervisor connection (see virt.go);
	// needVirt: the command talks to the hypervisor in any case.
	vconn    *virt.Conn
	needVirt bool
	// afterCommit: work that must wait until qubes.xml is saved (deleting
	// an auto_cleanup disposable's data), run by update.
	afterCommit []func()
}

func newEnv(io IO, now func() time.Time) *Env {
	v := viper.New()
	v.SetEnvPrefix("QVM")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	v.SetDefault("state-dir", "/var/lib/qubes")
	v.SetDefault("lock-timeout", "30s")
	return &Env{IO: io, Now: now, cfg: v}
}

// loadConfig reads /etc/qubes/qvm.yaml (QVM_CONFIG overrides the path);
// a missing file is fine, a broken one is an error.
func (env *Env) loadConfig() error {
	path := os.Getenv("QVM_CONFIG")
	if path == "" {
		path = "/etc/qubes/qvm.yaml"
	}
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	env.cfg.SetConfigFile(path)
	env.cfg.SetConfigType("yaml")
	if err := env.cfg.ReadInConfig(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// StateDir is the effective state directory.
func (env *Env) StateDir() string { return env.cfg.GetString("state-dir") }

// Verbosity is -v minus -q plus the default of 1.
func (env *Env) Verbosity() int { return 1 + env.verbose - env.quiet }

// Store opens the state directory with the configured lock timeout.
func (env *Env) Store() (*store.Store, error) {
	to := env.cfg.GetString("lock-timeout")
	d, err := time.ParseDuration(to)
	if err != nil {
		if n, err2 := strconv.Atoi(to); err2 == nil {
			d = time.Duration(n) * time.Second
		} else {
			return nil, usagef("invalid --lock-timeout %q: use a duration like 10s", to)
		}
	}
	return &store.Store{Dir: env.StateDir(), Host: hostInfo(), LockTimeout: d,
		Log: func(msg string) { env.log.Info(msg) }}, nil
}

// view runs fn on the state under a shared lock.
func (env *Env) view(ctx context.Context, fn func(*core.App) error) error {
	env.holdHypervisor(ctx)
	if err := env.reconcileNow(ctx); err != nil {
		return err
	}
	st, err := env.Store()
	if err != nil {
		return err
	}
	return st.View(ctx, env.withPowerStates(ctx, fn))
}

// update runs fn on the state under the exclusive lock and saves.
func (env *Env) update(ctx context.Context, fn func(*core.App) error) error {
	env.holdHypervisor(ctx)
	if err := env.reconcileNow(ctx); err != nil {
		return err
	}
	st, err := env.Store()
	if err != nil {
		return err
	}
	return env.committed(st.Update(ctx, env.withPowerStates(ctx, fn)))
}

// hostInfo reads the facts property defaults depend on.
func hostInfo() core.Host {
	h := core.Host{CPUs: runtime.NumCPU()}
	if _, err := os.Stat("/proc/xen"); err == nil {
		h.Xen = true
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
				h.MemMiB = kb / 1024
			}
		}
	}
	return h
}

// infof logs at the default verbosity as "<prog>: <msg>" on stderr.
func (env *Env) infof(prog, format string, args ...any) {
	if env.Verbosity() >= 1 {
		fmt.Fprintf(env.IO.Err, "%s: %s\n", prog, fmt.Sprintf(format, args...))
	}
}

// warnf prints a warning that shows unless -q was given twice.
func (env *Env) warnf(prog, format string, args ...any) {
	if env.Verbosity() >= 0 {
		fmt.Fprintf(env.IO.Err, "%s: %s\n", prog, fmt.Sprintf(format, args...))
	}
}
