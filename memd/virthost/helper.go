package virthost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/memd"
)

// libvirt registers the QEMU driver again on every embedded-driver
// connection and refuses after 16 in one process, so a long-running
// qmemmand cannot connect once per pass itself. With Options.Helper set,
// each session runs in a child process instead: it takes qvm's lock,
// connects, answers the parent's requests on a pipe and exits, which also
// guarantees nothing of the connection outlives the session.

// Environment of a session helper.
const (
	envHelperURI    = "QMEMMAND_HELPER_URI"
	envHelperBudget = "QMEMMAND_HELPER_BUDGET"
	envHelperLock   = "QMEMMAND_HELPER_LOCK_TIMEOUT"
)

type helperReq struct {
	Op    string `json:"op"` // hostmem, domains, set
	ID    string `json:"id,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
	HP    bool   `json:"hotplug,omitempty"`
}

type helperResp struct {
	Error   string             `json:"error,omitempty"`
	Total   int64              `json:"total,omitempty"`
	Free    int64              `json:"free,omitempty"`
	Domains []memd.DomainFacts `json:"domains,omitempty"`
}

// helperSession is the parent's end of a session helper.
type helperSession struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	enc *json.Encoder
}

func (h *Host) openHelper(ctx context.Context) (memd.Session, error) {
	cmd := exec.Command(h.opts.Helper[0], h.opts.Helper[1:]...)
	cmd.Env = append(os.Environ(), h.opts.HelperEnv...)
	cmd.Env = append(cmd.Env, envHelperURI+"="+h.cfg.URI, envHelperBudget+"="+strconv.FormatInt(h.opts.Budget, 10),
		envHelperLock+"="+h.cfg.LockTimeout.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("session helper: %w", err)
	}
	s := &helperSession{cmd: cmd, in: in, out: bufio.NewReader(out), enc: json.NewEncoder(in)}
	// The helper says it holds the connection (or why not) first.
	if _, err := s.read(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *helperSession) read() (helperResp, error) {
	var r helperResp
	line, err := s.out.ReadBytes('\n')
	if err != nil {
		return r, fmt.Errorf("session helper: %w", err)
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("session helper: %w", err)
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

func (s *helperSession) call(req helperReq) (helperResp, error) {
	if err := s.enc.Encode(req); err != nil {
		return helperResp{}, fmt.Errorf("session helper: %w", err)
	}
	return s.read()
}

func (s *helperSession) HostMem(context.Context) (int64, int64, error) {
	r, err := s.call(helperReq{Op: "hostmem"})
	return r.Total, r.Free, err
}

func (s *helperSession) Domains(context.Context) ([]memd.DomainFacts, error) {
	r, err := s.call(helperReq{Op: "domains"})
	return r.Domains, err
}

func (s *helperSession) SetTarget(_ context.Context, id string, bytes int64, hp bool) error {
	_, err := s.call(helperReq{Op: "set", ID: id, Bytes: bytes, HP: hp})
	return err
}

// Close ends the helper (its exit drops the connection and the lock).
func (s *helperSession) Close() error {
	s.in.Close()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return <-done
	}
}

// IsHelper reports whether this process was started as a session helper.
func IsHelper() bool { return os.Getenv(envHelperURI) != "" }

// ServeHelper is the child's side: one session on r/w, configured by the
// environment the parent set. It returns when the parent closes r.
func ServeHelper(ctx context.Context, r io.Reader, w io.Writer) error {
	budget, _ := strconv.ParseInt(os.Getenv(envHelperBudget), 10, 64)
	lock, _ := time.ParseDuration(os.Getenv(envHelperLock))
	h := New(virt.Config{URI: os.Getenv(envHelperURI), LockTimeout: lock}, Options{Budget: budget})
	enc := json.NewEncoder(w)
	s, err := h.openDirect(ctx)
	if err != nil {
		return enc.Encode(helperResp{Error: err.Error()})
	}
	defer s.Close()
	if err := enc.Encode(helperResp{}); err != nil {
		return err
	}
	dec := json.NewDecoder(r)
	for {
		var req helperReq
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var resp helperResp
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
			resp = helperResp{Error: err.Error()}
		}
		if err := enc.Encode(resp); err != nil {
			return err
		}
	}
}
