package virt

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
)

// Conn is a hypervisor connection, held by a helper process (qvm-virt)
// that Open starts. Close it when the command no longer needs the
// hypervisor: the helper exits, and with the embedded driver that releases
// the driver and the lock beside its root for the next process.
type Conn struct {
	URI string

	mu sync.Mutex // be, lock, path: one request at a time
	be backend
	// With the embedded driver qvm itself holds the lock beside the root
	// (from Open to Close) and the helper only the driver, so Release can
	// let the driver go without letting another process in.
	lock *flock.Flock
	path string // the helper, for a start after Release
	cfg  Config
}

type backend interface {
	call(ctx context.Context, req Request) (Response, error)
	close() error
}

var inProcess struct {
	sync.Mutex
	open Opener
}

// SetInProcess makes Open connect in this process through open instead
// of starting the helper (nil: the helper again). For tests that link
// libvirt and need the connection's state in their own process.
func SetInProcess(open Opener) {
	inProcess.Lock()
	inProcess.open = open
	inProcess.Unlock()
}

// HelperPath is where Open looks for the helper when Config.Helper is
// empty: qvm-virt next to the running executable (links resolved).
func HelperPath() string {
	exe, err := os.Executable()
	if err != nil {
		return HelperName
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Join(filepath.Dir(exe), HelperName)
}

// Open connects to the hypervisor: it starts the helper and waits until
// the helper holds the connection (for the embedded driver, also the lock
// beside the root; Open fails with a LockTimeoutError after LockTimeout).
func Open(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.URI == "" {
		cfg.URI = DefaultURI(cfg.StateDir)
	}
	inProcess.Lock()
	open := inProcess.open
	inProcess.Unlock()
	if open != nil {
		h, err := open(ctx, cfg)
		if err != nil {
			return nil, roundTrip(Response{Err: EncodeError(err)})
		}
		return &Conn{URI: cfg.URI, be: &local{h: h}}, nil
	}
	c := &Conn{URI: cfg.URI, path: cfg.Helper, cfg: cfg}
	if c.path == "" {
		c.path = HelperPath()
	}
	if root := EmbedRoot(cfg.URI); root != "" {
		if _, err := helperExists(c.path); err != nil {
			return nil, err
		}
		fl, err := LockRoot(ctx, root, cfg.LockTimeout)
		if err != nil {
			return nil, err
		}
		c.lock, c.cfg.LockHeld = fl, true
	}
	p, err := startHelper(ctx, c.path, c.cfg)
	if err != nil {
		c.unlock()
		return nil, err
	}
	c.be = p
	return c, nil
}

func (c *Conn) unlock() {
	if c.lock != nil {
		_ = c.lock.Unlock()
		c.lock = nil
	}
}

// Release lets the embedded driver go (the helper exits) while qvm keeps
// the lock beside the root, so that qmemmand, which qvm then asks for
// memory, can open the root under that lock; the next call starts the
// helper again. Other drivers and in-process connections stay as they are.
func (c *Conn) Release() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lock == nil || c.be == nil {
		return nil
	}
	err := c.be.close()
	c.be = nil
	return err
}

// Driver is the hypervisor family of this connection.
func (c *Conn) Driver() string { return Driver(c.URI) }

// Embedded reports whether this is the embedded QEMU driver.
func (c *Conn) Embedded() bool { return EmbedRoot(c.URI) != "" }

// Close ends the connection (and the helper) and releases the lock beside
// an embedded root. Later calls fail.
func (c *Conn) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.be != nil {
		err = c.be.close()
	}
	c.be, c.path = nil, ""
	c.unlock()
	return err
}

var errClosed = errors.New("hypervisor connection closed")

func (c *Conn) call(ctx context.Context, req Request) (Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.be == nil && c.lock != nil && c.path != "" {
		// Released: the driver again, under the lock still held.
		p, err := startHelper(ctx, c.path, c.cfg)
		if err != nil {
			return Response{}, err
		}
		c.be = p
	}
	if c.be == nil {
		return Response{}, errClosed
	}
	return c.be.call(ctx, req)
}

// States asks the hypervisor once for every active domain: name → state.
// Domains not in the map are Halted.
func (c *Conn) States(ctx context.Context) (map[string]State, error) {
	r, err := c.call(ctx, Request{Op: "states"})
	if err != nil {
		return nil, err
	}
	if r.States == nil {
		r.States = map[string]State{}
	}
	return r.States, nil
}

// State is one domain's power state; an unknown or inactive domain is Halted.
func (c *Conn) State(ctx context.Context, name string) (State, error) {
	r, err := c.call(ctx, Request{Op: "state", Name: name})
	return r.State, err
}

// CreatePaused defines the domain from xml (replacing an inactive
// definition of the same name) and starts it paused, as the reference does
// so that everything around it can be set up before the guest runs. It
// returns the domain's name.
func (c *Conn) CreatePaused(ctx context.Context, domXML string) (string, error) {
	r, err := c.call(ctx, Request{Op: "create", XML: domXML})
	return r.Name, err
}

func (c *Conn) do(ctx context.Context, op, name string) error {
	_, err := c.call(ctx, Request{Op: op, Name: name})
	return err
}

// Resume unpauses a domain.
func (c *Conn) Resume(ctx context.Context, name string) error { return c.do(ctx, "resume", name) }

// Suspend pauses a domain.
func (c *Conn) Suspend(ctx context.Context, name string) error { return c.do(ctx, "suspend", name) }

// Shutdown asks the guest to power off (ACPI power button on QEMU, the PV
// shutdown request on Xen); it returns at once.
func (c *Conn) Shutdown(ctx context.Context, name string) error { return c.do(ctx, "shutdown", name) }

// Destroy kills a domain at once.
func (c *Conn) Destroy(ctx context.Context, name string) error { return c.do(ctx, "destroy", name) }

// Undefine drops an inactive domain's persistent definition (qvm defines
// again at every start from qubes.xml, which is the only truth). Unknown
// domains are fine.
func (c *Conn) Undefine(ctx context.Context, name string) error { return c.do(ctx, "undefine", name) }

// XMLDesc is the live XML of a domain.
func (c *Conn) XMLDesc(ctx context.Context, name string) (string, error) {
	r, err := c.call(ctx, Request{Op: "xml", Name: name})
	return r.XML, err
}

// AttachDevice hot-plugs a device (<disk>, <hostdev>) into the running
// domain only; errors carry libvirt's message.
func (c *Conn) AttachDevice(ctx context.Context, name, devXML string) error {
	_, err := c.call(ctx, Request{Op: "attach", Name: name, XML: devXML})
	return err
}

// DetachDevice unplugs a device from the running domain.
func (c *Conn) DetachDevice(ctx context.Context, name, devXML string) error {
	_, err := c.call(ctx, Request{Op: "detach", Name: name, XML: devXML})
	return err
}

// WaitHalted polls until the domain is no longer active or ctx ends.
func (c *Conn) WaitHalted(ctx context.Context, name string, poll time.Duration) error {
	return WaitHalted(ctx, poll, func() (State, error) { return c.State(ctx, name) })
}

// WaitHalted polls state every poll (default 100 ms) until it is no
// longer active or ctx ends.
func WaitHalted(ctx context.Context, poll time.Duration, state func() (State, error)) error {
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		st, err := state()
		if err != nil {
			return err
		}
		if !st.Active() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// roundTrip gives a response's error as the wire would: the same text
// and typed parts, nothing else.
func roundTrip(r Response) error {
	b, err := json.Marshal(r.Err)
	if err != nil {
		return err
	}
	var w *WireError
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	return w.Err()
}

// local runs requests in this process (SetInProcess).
type local struct {
	mu sync.Mutex
	h  Hypervisor
}

func (l *local) call(ctx context.Context, req Request) (Response, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	r := handle(ctx, l.h, req)
	if r.Err != nil {
		return Response{}, roundTrip(r)
	}
	return r, nil
}

func (l *local) close() error { return l.h.Close() }

// pipe is a running helper.
type pipe struct {
	mu     sync.Mutex
	path   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *os.File
	enc    *json.Encoder
	dec    *json.Decoder
	broken error
	waited chan struct{}
	werr   error
}

func helperExists(path string) (os.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("hypervisor helper %s is missing (install %s next to qvm, or name it with QVM_VIRT_HELPER)", path, HelperName)
		}
		return nil, fmt.Errorf("hypervisor helper: %w", err)
	}
	return fi, nil
}

func startHelper(ctx context.Context, path string, cfg Config) (*pipe, error) {
	if _, err := helperExists(path); err != nil {
		return nil, err
	}
	cmd := exec.Command(path, "serve")
	cmd.Env = append(os.Environ(), EnvHelperChild+"=1")
	cmd.Stderr = os.Stderr
	// Its own process group: a terminal's ^C goes to qvm, which decides
	// (a command that cleans up on SIGINT still needs the hypervisor);
	// the helper ends when qvm closes its stdin or exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Our own pipe for the answers, not StdoutPipe: Wait (which runs as
	// soon as the helper exits) must not close it before its last answer,
	// such as a failed open, is read.
	out, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		in.Close()
		return nil, fmt.Errorf("hypervisor helper %s: %w", path, err)
	}
	p := &pipe{path: path, cmd: cmd, in: in, out: out, enc: json.NewEncoder(in), dec: json.NewDecoder(bufio.NewReader(out)), waited: make(chan struct{})}
	go func() {
		p.werr = cmd.Wait()
		close(p.waited)
	}()
	if _, err := p.call(ctx, Request{Op: "open", Config: &cfg}); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *pipe) call(ctx context.Context, req Request) (Response, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		return Response{}, p.broken
	}
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	// A cancelled request ends the helper: libvirt calls cannot be
	// interrupted, and the helper's exit releases what it holds.
	stop := context.AfterFunc(ctx, func() { p.cmd.Process.Kill() })
	var r Response
	err := p.enc.Encode(req)
	if err == nil {
		err = p.dec.Decode(&r)
	}
	if !stop() {
		<-p.waited
		p.broken = fmt.Errorf("hypervisor helper %s was stopped: %w", HelperName, ctx.Err())
		return Response{}, ctx.Err()
	}
	if err != nil {
		p.cmd.Process.Kill()
		<-p.waited
		p.broken = fmt.Errorf("hypervisor helper %s failed: %v", p.path, p.exitStatus(err))
		return Response{}, p.broken
	}
	if r.Err != nil {
		return Response{}, r.Err.Err()
	}
	return r, nil
}

// exitStatus says how the helper ended when its pipe broke.
func (p *pipe) exitStatus(err error) string {
	if p.werr != nil {
		return p.werr.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "exited without an answer"
	}
	return err.Error()
}

// close ends the helper's stdin and waits for it to exit (it closes the
// connection first), killing it after 30 s.
func (p *pipe) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in.Close()
	select {
	case <-p.waited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.waited
	}
	p.out.Close()
	if p.broken == nil {
		p.broken = errClosed
		if p.werr != nil {
			return fmt.Errorf("hypervisor helper %s: %w", HelperName, p.werr)
		}
	}
	return nil
}
