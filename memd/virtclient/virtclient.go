// Package virtclient is qmemmand's side of the libvirt helper: a memd.Host
// whose sessions and event watch run in a child process (qmemmand-virt).
//
// qmemmand itself never links libvirt. That keeps the daemon small (the
// libvirt library and its dependencies alone are over 10 MiB resident) and
// is required for the embedded QEMU driver: a process that connected to it
// once keeps the driver (and the root's pid file) loaded until it exits,
// and libvirt refuses a 17th embedded connection in one process. A child
// per session takes qvm's lock, connects, answers, and exits; for a
// request from a qvm that holds that lock and waits for the answer
// (memd.WithLentLock) it uses the requester's lock instead.
//
// The pipe protocol is one JSON object a line: the child first sends a
// hello (or an error), then answers each request in order. Where the
// connection may be held (Xen, libvirtd) one helper serves every session
// and also sends {"event": true} lines, at any time, for domain lifecycle
// events.
package virtclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/memd"
)

// Environment of a helper child.
const (
	EnvURI      = "QMEMMAND_HELPER_URI"
	EnvStateDir = "QMEMMAND_HELPER_STATE_DIR"
	EnvBudget   = "QMEMMAND_HELPER_BUDGET"
	EnvLock     = "QMEMMAND_HELPER_LOCK_TIMEOUT"
	// EnvLockHeld=1: the requester holds the embedded root's lock for
	// this session (memd.WithLentLock); the helper must not take it.
	EnvLockHeld = "QMEMMAND_HELPER_LOCK_HELD"
)

// Request is one line from qmemmand to a helper.
type Request struct {
	Op    string `json:"op"` // hostmem, domains, set
	ID    string `json:"id,omitempty"`
	Bytes int64  `json:"bytes,omitempty"`
	HP    bool   `json:"hotplug,omitempty"`
}

// Response is one line back. The hello carries URI and Embedded.
type Response struct {
	Error    string             `json:"error,omitempty"`
	URI      string             `json:"uri,omitempty"`
	Embedded bool               `json:"embedded,omitempty"`
	Total    int64              `json:"total,omitempty"`
	Free     int64              `json:"free,omitempty"`
	Domains  []memd.DomainFacts `json:"domains,omitempty"`
	Event    bool               `json:"event,omitempty"`
}

// Options say how to start the helper and what to connect to.
type Options struct {
	// Argv starts the helper; "session" is appended.
	Argv []string
	// Env is added to the helper's environment.
	Env []string
	// URI is libvirt's URI; empty lets the helper choose as qvm does.
	URI      string
	StateDir string
	// Budget, when positive: see virthost.Options.Budget.
	Budget      int64
	LockTimeout time.Duration
}

// Host implements memd.Host and memd.Watcher through helper children.
type Host struct {
	opts   Options
	events chan struct{} // lifecycle events from the held helper

	mu       sync.Mutex
	held     *session
	embedded bool // learnt from a hello
	known    bool
	uri      string // as the helper resolved it
}

// New returns a Host.
func New(o Options) *Host { return &Host{opts: o, events: make(chan struct{}, 1)} }

type line struct {
	r   Response
	err error
}

type session struct {
	cmd      *exec.Cmd
	in       io.WriteCloser
	enc      *json.Encoder
	resps    chan line
	broken   bool
	URI      string
	Embedded bool
}

func (h *Host) open(ctx context.Context) (*session, error) {
	if len(h.opts.Argv) == 0 {
		return nil, errors.New("no libvirt helper (qmemmand-virt) configured")
	}
	args := append(append([]string{}, h.opts.Argv[1:]...), "session")
	cmd := exec.Command(h.opts.Argv[0], args...)
	cmd.Env = append(append(os.Environ(), h.opts.Env...),
		EnvURI+"="+h.opts.URI, EnvStateDir+"="+h.opts.StateDir,
		EnvBudget+"="+strconv.FormatInt(h.opts.Budget, 10), EnvLock+"="+h.opts.LockTimeout.String())
	if memd.LentLock(ctx) {
		cmd.Env = append(cmd.Env, EnvLockHeld+"=1")
	}
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
		return nil, fmt.Errorf("libvirt helper: %w", err)
	}
	s := &session{cmd: cmd, in: in, enc: json.NewEncoder(in), resps: make(chan line, 1)}
	go s.read(bufio.NewReader(out), h.events)
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	hello, err := s.next()
	if err != nil {
		s.Close()
		return nil, err
	}
	s.URI, s.Embedded = hello.URI, hello.Embedded
	return s, nil
}

// read passes answers on and turns event lines into a nudge.
func (s *session) read(r *bufio.Reader, events chan struct{}) {
	defer close(s.resps)
	for {
		b, err := r.ReadBytes('\n')
		if err != nil {
			s.resps <- line{err: fmt.Errorf("libvirt helper: %w", err)}
			return
		}
		var resp Response
		if err := json.Unmarshal(b, &resp); err != nil {
			s.resps <- line{err: fmt.Errorf("libvirt helper: %w", err)}
			return
		}
		if resp.Event {
			select {
			case events <- struct{}{}:
			default:
			}
			continue
		}
		s.resps <- line{r: resp}
	}
}

func (s *session) next() (Response, error) {
	l, ok := <-s.resps
	if !ok {
		s.broken = true
		return Response{}, errors.New("libvirt helper: gone")
	}
	if l.err != nil {
		s.broken = true
		return Response{}, l.err
	}
	if l.r.Error != "" {
		return l.r, errors.New(l.r.Error)
	}
	return l.r, nil
}

func (s *session) call(req Request) (Response, error) {
	if s.broken {
		return Response{}, errors.New("libvirt helper: gone")
	}
	if err := s.enc.Encode(req); err != nil {
		s.broken = true
		return Response{}, fmt.Errorf("libvirt helper: %w", err)
	}
	return s.next()
}

func (s *session) HostMem(context.Context) (int64, int64, error) {
	r, err := s.call(Request{Op: "hostmem"})
	return r.Total, r.Free, err
}

func (s *session) Domains(context.Context) ([]memd.DomainFacts, error) {
	r, err := s.call(Request{Op: "domains"})
	return r.Domains, err
}

func (s *session) SetTarget(_ context.Context, id string, bytes int64, hp bool) error {
	_, err := s.call(Request{Op: "set", ID: id, Bytes: bytes, HP: hp})
	return err
}

// Close ends the helper; its exit drops the connection and qvm's lock.
func (s *session) Close() error {
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

// Open starts a session helper and waits for it to hold the connection,
// or reuses the held one.
func (h *Host) Open(ctx context.Context) (memd.Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held != nil && !h.held.broken {
		return &heldSession{h: h, session: h.held}, nil
	}
	if h.held != nil {
		h.held.Close()
		h.held = nil
	}
	s, err := h.open(ctx)
	if err != nil {
		return nil, err
	}
	h.known, h.embedded, h.uri = true, s.Embedded, s.URI
	if s.Embedded {
		return s, nil
	}
	h.held = s
	return &heldSession{h: h, session: s}, nil
}

// Close stops a held helper.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		return nil
	}
	err := h.held.Close()
	h.held = nil
	return err
}

// heldSession leaves the helper running on Close; a broken one is
// replaced by the next Open.
type heldSession struct {
	h *Host
	*session
}

func (s *heldSession) Close() error { return nil }

// ErrNoEvents is returned by Watch where events need a connection that
// may not be held (the embedded driver).
var ErrNoEvents = errors.New("no lifecycle events with the embedded driver")

// Watch calls notify for each domain lifecycle event the held helper
// reports, until ctx ends. With the embedded driver it returns ErrNoEvents.
func (h *Host) Watch(ctx context.Context, notify func()) error {
	for {
		h.mu.Lock()
		known, embedded := h.known, h.embedded
		h.mu.Unlock()
		if known && embedded {
			return ErrNoEvents
		}
		if !known {
			// Learn the driver from a first session.
			s, err := h.Open(ctx)
			if err != nil {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
					continue
				}
			}
			s.Close()
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.events:
			notify()
		}
	}
}

// RootHeldBy reports whether process pid has the embedded driver's root
// loaded: libvirt in that process, or in its child (qvm's hypervisor
// helper, qvm-virt), holds a lock on run/qemu/driver.pid.
func (h *Host) RootHeldBy(pid int) bool {
	holder := h.rootHolder()
	return holder != 0 && (holder == pid || parentPid(holder) == pid)
}

// RootLockedBy reports whether process pid holds the lock beside the
// embedded root while no process has the driver loaded.
func (h *Host) RootLockedBy(pid int) bool {
	root := h.root()
	return root != "" && virt.DriverHolder(root) == 0 && virt.LockedBy(root, pid)
}

// RootBusy reports whether another process has the embedded root loaded,
// or holds the lock beside it.
func (h *Host) RootBusy() bool {
	root := h.root()
	if root == "" {
		return false
	}
	self := os.Getpid()
	if p := virt.DriverHolder(root); p != 0 && p != self {
		return true
	}
	return virt.LockBusy(root)
}

func (h *Host) rootHolder() int {
	root := h.root()
	if root == "" {
		return 0
	}
	return virt.DriverHolder(root)
}

// root is the embedded root, "" for other drivers.
func (h *Host) root() string {
	uri := h.opts.URI
	h.mu.Lock()
	if h.uri != "" {
		uri = h.uri
	}
	h.mu.Unlock()
	return virt.EmbedRoot(uri)
}

// parentPid is a process's parent (from /proc/PID/stat), 0 if unknown.
func parentPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}
