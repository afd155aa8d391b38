package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/memd"
)

// qmemmanSocket is where qmemmand listens (setting qmemman-socket,
// env QVM_QMEMMAN_SOCKET).
func (env *Env) qmemmanSocket() string {
	if s := env.cfg.GetString("qmemman-socket"); s != "" {
		return s
	}
	return memd.DefaultSocket
}

// MemoryError: qmemmand could not free enough memory.
type MemoryError struct{ Name string }

func (e *MemoryError) Error() string {
	return fmt.Sprintf("Not enough memory to start domain '%s'", e.Name)
}

// memStartRequest is what qmemmand needs to size a start (spec/start.md §3).
func memStartRequest(app *core.App, d *core.Domain) memd.StartRequest {
	get := func(p string) core.Value {
		v, err := app.Get(d, p)
		if err != nil {
			return core.Value{None: true}
		}
		return v
	}
	r := memd.StartRequest{VirtMode: get("virt_mode").S, MemoryMiB: get("memory").Int(),
		MaxMemMiB: get("maxmem").Int(), VCPUs: get("vcpus").Int(), LinuxStubdom: true}
	if v := get("stubdom_mem"); !v.None {
		r.StubdomMemMiB = v.Int()
	}
	if v, ok := app.FeatureWithTemplate(d, "linux-stubdom"); ok {
		b, err := core.ParseBool(v)
		r.LinuxStubdom = err == nil && b || err != nil && v != ""
	}
	return r
}

// requestMem asks qmemmand to free memory for d. On OK the returned release
// closes the connection, which is when qmemmand resumes balancing (after
// the domain exists). No qmemmand → a note (once per process) and a no-op
// release.
func (env *Env) requestMem(ctx context.Context, app *core.App, d *core.Domain) (release func(), err error) {
	sock := env.qmemmanSocket()
	size := memd.RequestSize(memStartRequest(app, d))
	// With the embedded driver our helper has the root loaded, and no
	// other process can have it until the helper exits: let the driver go
	// (qvm keeps the lock beside the root) so that qmemmand can balloon
	// under that lock while we wait; the next hypervisor call loads it
	// again. Without a qmemmand there is nothing to wait for.
	if env.vconn != nil && env.vconn.Embedded() {
		if _, err := os.Stat(sock); err == nil {
			if err := env.vconn.Release(); err != nil {
				return nil, err
			}
		}
	}
	// qmemmand may finish a balancing pass first; its answer comes well
	// within a minute.
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	g, err := memd.RequestMemory(rctx, sock, size)
	var ce *memd.ConnectError
	switch {
	case errors.As(err, &ce) && (errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)):
		if !env.noQmemmanNoted {
			env.noQmemmanNoted = true
			env.warnf(env.progFor("qvm start"), "qmemmand is not running (no %s); starting without a memory request", sock)
		}
		return func() {}, nil
	case errors.Is(err, memd.ErrNotEnoughMemory):
		return nil, &MemoryError{Name: d.Name()}
	case err != nil:
		return nil, err
	}
	return func() { g.Close() }, nil
}
