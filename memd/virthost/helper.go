package virthost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/memd/virtclient"
)

// FromEnv is the Host a helper child serves, configured by the environment
// qmemmand set (see virtclient).
func FromEnv() *Host {
	budget, _ := strconv.ParseInt(os.Getenv(virtclient.EnvBudget), 10, 64)
	lock, _ := time.ParseDuration(os.Getenv(virtclient.EnvLock))
	return New(virt.Config{URI: os.Getenv(virtclient.EnvURI), StateDir: os.Getenv(virtclient.EnvStateDir), LockTimeout: lock,
		LockHeld: os.Getenv(virtclient.EnvLockHeld) == "1"}, Options{Budget: budget})
}

// ServeSession is a session helper: connect (under qvm's lock for the
// embedded driver), say hello, answer requests until r ends. Where the
// connection is held it also reports lifecycle events.
func (h *Host) ServeSession(ctx context.Context, r io.Reader, w io.Writer) error {
	var mu sync.Mutex // one line at a time: answers and events
	enc := json.NewEncoder(w)
	send := func(v virtclient.Response) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(v)
	}
	if !h.embedded {
		StartEventLoop()
	}
	s, err := h.openDirect(ctx)
	if err != nil {
		return send(virtclient.Response{Error: err.Error()})
	}
	defer s.Close()
	if err := send(virtclient.Response{URI: h.cfg.URI, Embedded: h.embedded}); err != nil {
		return err
	}
	if !h.embedded {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			if err := h.Watch(wctx, func() { send(virtclient.Response{Event: true}) }); err != nil {
				fmt.Fprintln(os.Stderr, "qmemmand-virt: lifecycle events:", err)
			}
		}()
	}
	dec := json.NewDecoder(r)
	for {
		var req virtclient.Request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var resp virtclient.Response
		var err error
		switch req.Op {
		case "hostmem":
			resp.Total, resp.Free, err = s.HostMem(ctx)
		case "domains":
			resp.Domains, err = s.Domains(ctx)
		case "set":
			err = s.SetTarget(ctx, req.ID, req.Bytes, req.HP)
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			resp = virtclient.Response{Error: err.Error()}
		}
		if err := send(resp); err != nil {
			return err
		}
	}
}

// ServeHelperMain is the helper binary's whole job (mode "session"). It
// returns the exit code.
func ServeHelperMain(mode string) int {
	h := FromEnv()
	defer h.Close()
	var err error
	switch mode {
	case "session":
		err = h.ServeSession(context.Background(), os.Stdin, os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "qmemmand-virt: started by qmemmand only (mode session, not %q)\n", mode)
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qmemmand-virt:", err)
		return 1
	}
	return 0
}
