// Package lvconn is the libvirt connection behind core/virt: the only
// package (with memd/virthost) that links libvirt. The hypervisor helper
// cmd/qvm-virt serves it to qvm over a pipe (virt.Serve), so qvm itself
// never loads libvirt.so.
package lvconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gofrs/flock"
	"libvirt.org/go/libvirt"

	"github.com/qvm-dev/qvm/core/virt"
)

// Conn is an open libvirt connection. Close it as soon as the process no
// longer needs the hypervisor.
type Conn struct {
	URI    string
	lv     *libvirt.Connect
	lock   *flock.Flock
	shared bool // the process's embedded connection: never closed
}

// Driver is the hypervisor family of this connection.
func (c *Conn) Driver() string { return virt.Driver(c.URI) }

// Embedded reports whether this is the embedded QEMU driver.
func (c *Conn) Embedded() bool { return virt.EmbedRoot(c.URI) != "" }

var eventLoop sync.Once

// StartEventLoop registers libvirt's default event loop once per process;
// the embedded driver needs one to watch its QEMU monitors, lifecycle
// events need one too.
func StartEventLoop() {
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
func Open(ctx context.Context, cfg virt.Config) (*Conn, error) {
	uri := cfg.URI
	if uri == "" {
		uri = virt.DefaultURI(cfg.StateDir)
	}
	c := &Conn{URI: uri}
	root := virt.EmbedRoot(uri)
	if root == "" {
		lv, err := libvirt.NewConnect(uri)
		if err != nil {
			return nil, connectError(uri, err)
		}
		c.lv = lv
		return c, nil
	}
	if !cfg.LockHeld {
		fl, err := virt.LockRoot(ctx, root, cfg.LockTimeout)
		if err != nil {
			return nil, err
		}
		c.lock = fl
	}
	embeddedConns.Lock()
	defer embeddedConns.Unlock()
	if lv, ok := embeddedConns.m[root]; ok {
		c.lv, c.shared = lv, true
		return c, nil
	}
	if err := virt.PrepareRoot(root); err != nil {
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
	StartEventLoop()
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
	if virt.EmbedRoot(uri) != "" && strings.Contains(msg, "Failed to parse user") {
		// libvirt resolves its build-time QEMU user before reading qemu.conf.
		return fmt.Errorf("connect to %s: %s (the embedded QEMU driver needs that system user to exist even though qvm runs QEMU as root; create it with 'useradd --system libvirt-qemu' or install libvirt-daemon-system)", uri, msg)
	}
	if virt.EmbedRoot(uri) != "" && strings.Contains(msg, "no connection driver available") {
		return fmt.Errorf("connect to %s: %s (install libvirt-daemon-driver-qemu and qemu-system-x86)", uri, msg)
	}
	return fmt.Errorf("connect to %s: %s", uri, msg)
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
