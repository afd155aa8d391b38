package virt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"libvirt.org/go/libvirt"
)

// Config says where to connect. The zero value picks the URI by looking at
// the host (see DefaultURI).
type Config struct {
	// URI is the libvirt connection URI; empty means DefaultURI(StateDir).
	URI string
	// StateDir is the Qubes state directory; the embedded driver's root is
	// StateDir/libvirt.
	StateDir string
	// LockTimeout bounds the wait for the embedded root's lock (default 30s).
	LockTimeout time.Duration
}

// Conn is an open libvirt connection. Close it as soon as the command no
// longer needs the hypervisor: with the embedded driver it also releases the
// root for the next qvm process.
type Conn struct {
	URI  string
	lv   *libvirt.Connect
	lock *flock.Flock
}

// Paths of the host probes; variables only so tests can point them elsewhere.
type probes struct {
	procXen string
	sockets []string
}

var hostProbes = probes{
	procXen: "/proc/xen",
	sockets: []string{"/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock"},
}

// DefaultURI is xen:///system where /proc/xen exists, qemu:///system where
// a libvirtd (or virtqemud) socket answers, else the embedded QEMU driver
// rooted at stateDir/libvirt.
func DefaultURI(stateDir string) string { return hostProbes.defaultURI(stateDir) }

func (p probes) defaultURI(stateDir string) string {
	if _, err := os.Stat(p.procXen); err == nil {
		return "xen:///system"
	}
	for _, s := range p.sockets {
		c, err := net.DialTimeout("unix", s, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return "qemu:///system"
		}
	}
	return EmbedURI(stateDir)
}

// EmbedURI is the embedded QEMU driver's URI for a state directory.
func EmbedURI(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	return "qemu:///embed?root=" + filepath.Join(abs, "libvirt")
}

// EmbedRoot returns the root directory of an embedded-driver URI, or "" when
// the URI is not one.
func EmbedRoot(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "qemu" || u.Path != "/embed" {
		return ""
	}
	return u.Query().Get("root")
}

// Driver is the hypervisor family of a URI: "xen", "qemu", "test", ...
func Driver(uri string) string {
	s, _, _ := strings.Cut(uri, ":")
	s, _, _ = strings.Cut(s, "+") // qemu+ssh://
	return s
}

// Driver is the hypervisor family of this connection.
func (c *Conn) Driver() string { return Driver(c.URI) }

// Embedded reports whether this is the embedded QEMU driver.
func (c *Conn) Embedded() bool { return EmbedRoot(c.URI) != "" }

// LockTimeoutError: another process kept the embedded root for too long.
type LockTimeoutError struct {
	Root    string
	Timeout time.Duration
}

func (e *LockTimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for the embedded libvirt root %s (another qvm is using the hypervisor)", e.Timeout, e.Root)
}

// qemuConf is written into the embedded root: QEMU's output goes straight
// to files (no virtlogd daemon), and QEMU runs as root like the caller, so
// volumes need no ownership changes (and libvirt keeps no owner xattrs,
// whose timestamps it would warn about on the next process's start).
const qemuConf = `# written by qvm: the embedded driver runs without virtlogd
stdio_handler = "file"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
`

var eventLoop sync.Once

// startEventLoop registers libvirt's default event loop once per process;
// the embedded driver needs one to watch its QEMU monitors.
func startEventLoop() {
	eventLoop.Do(func() {
		if err := libvirt.EventRegisterDefaultImpl(); err != nil {
			return
		}
		go func() {
			for libvirt.EventRunDefaultImpl() == nil {
			}
		}()
	})
}

// Open connects to the hypervisor. For the embedded driver it first takes
// the lock beside the root (waiting up to LockTimeout) and prepares the root.
func Open(ctx context.Context, cfg Config) (*Conn, error) {
	uri := cfg.URI
	if uri == "" {
		uri = DefaultURI(cfg.StateDir)
	}
	c := &Conn{URI: uri}
	if root := EmbedRoot(uri); root != "" {
		fl, err := lockRoot(ctx, root, cfg.LockTimeout)
		if err != nil {
			return nil, err
		}
		c.lock = fl
		if err := prepareRoot(root); err != nil {
			c.unlock()
			return nil, err
		}
		// libvirt logs warnings to stderr unless told otherwise (read once,
		// at its first use in the process); keep them in the root so qvm's
		// own output stays clean.
		if os.Getenv("LIBVIRT_LOG_OUTPUTS") == "" {
			logDir := filepath.Join(root, "log")
			if os.MkdirAll(logDir, 0o755) == nil {
				os.Setenv("LIBVIRT_LOG_OUTPUTS", "3:file:"+filepath.Join(logDir, "libvirt.log"))
			}
		}
		startEventLoop()
	}
	lv, err := libvirt.NewConnect(uri)
	if err != nil {
		c.unlock()
		return nil, connectError(uri, err)
	}
	c.lv = lv
	return c, nil
}

func connectError(uri string, err error) error {
	msg := err.Error()
	var lerr libvirt.Error
	if errors.As(err, &lerr) {
		msg = lerr.Message
	}
	if EmbedRoot(uri) != "" && strings.Contains(msg, "Failed to parse user") {
		// libvirt resolves its build-time QEMU user before reading qemu.conf.
		return fmt.Errorf("connect to %s: %s (the embedded QEMU driver needs that system user to exist even though qvm runs QEMU as root; create it with 'useradd --system libvirt-qemu' or install libvirt-daemon-system)", uri, msg)
	}
	if EmbedRoot(uri) != "" && strings.Contains(msg, "no connection driver available") {
		return fmt.Errorf("connect to %s: %s (install libvirt-daemon-driver-qemu and qemu-system-x86)", uri, msg)
	}
	return fmt.Errorf("connect to %s: %s", uri, msg)
}

func lockRoot(ctx context.Context, root string, timeout time.Duration) (*flock.Flock, error) {
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return nil, fmt.Errorf("embedded libvirt root: %w", err)
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	fl := flock.New(strings.TrimRight(root, "/")+".lock", flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := fl.TryLockContext(lctx, 10*time.Millisecond)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, &LockTimeoutError{Root: root, Timeout: timeout}
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s.lock: %w", root, err)
	}
	if !ok {
		return nil, &LockTimeoutError{Root: root, Timeout: timeout}
	}
	return fl, nil
}

// prepareRoot creates the root and writes etc/qemu.conf when it differs.
func prepareRoot(root string) error {
	etc := filepath.Join(root, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return fmt.Errorf("embedded libvirt root: %w", err)
	}
	p := filepath.Join(etc, "qemu.conf")
	if old, err := os.ReadFile(p); err == nil && string(old) == qemuConf {
		return nil
	}
	if err := os.WriteFile(p+".tmp", []byte(qemuConf), 0o644); err != nil {
		return fmt.Errorf("embedded libvirt root: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("embedded libvirt root: %w", err)
	}
	return nil
}

func (c *Conn) unlock() {
	if c.lock != nil {
		_ = c.lock.Unlock()
		c.lock = nil
	}
}

// Close closes the connection and releases the embedded root.
func (c *Conn) Close() error {
	var err error
	if c.lv != nil {
		_, err = c.lv.Close()
		c.lv = nil
	}
	c.unlock()
	return err
}

// Libvirt is the raw connection for callers that need more than this
// package offers (devices, memory statistics). Do not close it.
func (c *Conn) Libvirt() *libvirt.Connect { return c.lv }
