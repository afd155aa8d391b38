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
	"golang.org/x/sys/unix"
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
	URI    string
	lv     *libvirt.Connect
	lock   *flock.Flock
	shared bool // the process's embedded connection: never closed
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
	Holder  int // pid whose libvirt holds the root, when known
}

func (e *LockTimeoutError) Error() string {
	if e.Holder != 0 {
		return fmt.Sprintf("timed out after %s waiting for the embedded libvirt root %s (process %d holds it; libvirt keeps an embedded root until the process that opened it exits)", e.Timeout, e.Root, e.Holder)
	}
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

// embeddedConns are the embedded-driver connections of this process, by
// root. libvirt keeps an embedded driver (with a lock on its root's
// run/qemu/driver.pid) alive until the process exits, whatever is closed,
// and refuses to register it again after a few dozen opens; so a process
// opens each root once and reuses that connection. This mirrors state
// libvirt itself keeps per process, hence a package variable.
var embeddedConns = struct {
	sync.Mutex
	m map[string]*libvirt.Connect
}{m: map[string]*libvirt.Connect{}}

// Open connects to the hypervisor. For the embedded driver it first takes
// the lock beside the root (waiting up to LockTimeout, also for another
// process whose libvirt still holds the root) and prepares the root.
func Open(ctx context.Context, cfg Config) (*Conn, error) {
	uri := cfg.URI
	if uri == "" {
		uri = DefaultURI(cfg.StateDir)
	}
	c := &Conn{URI: uri}
	root := EmbedRoot(uri)
	if root == "" {
		lv, err := libvirt.NewConnect(uri)
		if err != nil {
			return nil, connectError(uri, err)
		}
		c.lv = lv
		return c, nil
	}
	fl, err := lockRoot(ctx, root, cfg.LockTimeout)
	if err != nil {
		return nil, err
	}
	c.lock = fl
	embeddedConns.Lock()
	defer embeddedConns.Unlock()
	if lv, ok := embeddedConns.m[root]; ok {
		c.lv, c.shared = lv, true
		return c, nil
	}
	if err := prepareRoot(root); err != nil {
		c.unlock()
		return nil, err
	}
	// libvirt logs warnings to stderr unless told otherwise (read once, at
	// its first use in the process); keep them in the root so qvm's own
	// output stays clean.
	if os.Getenv("LIBVIRT_LOG_OUTPUTS") == "" {
		logDir := filepath.Join(root, "log")
		if os.MkdirAll(logDir, 0o755) == nil {
			os.Setenv("LIBVIRT_LOG_OUTPUTS", "3:file:"+filepath.Join(logDir, "libvirt.log"))
		}
	}
	startEventLoop()
	lv, err := libvirt.NewConnect(uri)
	if err != nil {
		c.unlock()
		return nil, connectError(uri, err)
	}
	embeddedConns.m[root] = lv
	c.lv, c.shared = lv, true
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
	holder := 0
	for {
		ok, err := fl.TryLockContext(lctx, 10*time.Millisecond)
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, &LockTimeoutError{Root: root, Timeout: timeout, Holder: holder}
		}
		if err != nil {
			return nil, fmt.Errorf("lock %s.lock: %w", root, err)
		}
		if !ok {
			return nil, &LockTimeoutError{Root: root, Timeout: timeout, Holder: holder}
		}
		// Our lock is not enough while another process's libvirt still
		// has the root; let go and wait for that process to end.
		if holder = driverHolder(root); holder == 0 {
			return fl, nil
		}
		_ = fl.Unlock()
		select {
		case <-lctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &LockTimeoutError{Root: root, Timeout: timeout, Holder: holder}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// driverHolder is the pid of another process whose libvirt holds the
// root's QEMU driver (its lock on run/qemu/driver.pid), 0 if none.
func driverHolder(root string) int {
	f, err := os.Open(filepath.Join(root, "run", "qemu", "driver.pid"))
	if err != nil {
		return 0
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil || lk.Type == unix.F_UNLCK {
		return 0
	}
	return int(lk.Pid)
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

// Close closes the connection and releases the lock beside the embedded
// root. The process's embedded libvirt connection itself stays open for
// the next Open (libvirt keeps the driver anyway until the process exits;
// other processes wait for that, see lockRoot).
func (c *Conn) Close() error {
	var err error
	if c.lv != nil && !c.shared {
		_, err = c.lv.Close()
	}
	c.lv = nil
	c.unlock()
	return err
}

// Libvirt is the raw connection for callers that need more than this
// package offers (devices, memory statistics). Do not close it.
func (c *Conn) Libvirt() *libvirt.Connect { return c.lv }
