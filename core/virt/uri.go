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
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// Config says where to connect. The zero value picks the URI by looking at
// the host (see DefaultURI).
type Config struct {
	// URI is the libvirt connection URI; empty means DefaultURI(StateDir).
	URI string `json:"uri,omitempty"`
	// StateDir is the Qubes state directory; the embedded driver's root is
	// StateDir/libvirt.
	StateDir string `json:"state_dir,omitempty"`
	// LockHeld: the caller already holds the lock beside the embedded
	// root for this connection (qvm does, for its helper), so Open must
	// not take it.
	LockHeld bool `json:"lock_held,omitempty"`
	// LockTimeout bounds the wait for the embedded root's lock (default 30s).
	LockTimeout time.Duration `json:"lock_timeout,omitempty"`
	// Helper is the path of the hypervisor helper (qvm-virt) that Open
	// starts; empty means qvm-virt next to the running executable.
	Helper string `json:"-"`
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

// LockRoot takes the lock beside an embedded root (ROOT.lock), waiting up
// to timeout (default 30s), also for another process whose libvirt still
// holds the root. The process that loads the embedded driver holds it as
// long as the driver is loaded, that is until it exits.
func LockRoot(ctx context.Context, root string, timeout time.Duration) (*flock.Flock, error) {
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return nil, fmt.Errorf("embedded libvirt root: %w", err)
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	fl := flock.New(lockPath(root), flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
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
		if holder = DriverHolder(root); holder == 0 {
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

// DriverHolder is the pid of another process whose libvirt holds the
// root's QEMU driver (its lock on run/qemu/driver.pid), 0 if none.
func DriverHolder(root string) int {
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

// PrepareRoot creates an embedded root and writes its etc/qemu.conf when
// it differs.
func PrepareRoot(root string) error {
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

// LockedBy reports whether process pid holds the lock beside an embedded
// root (ROOT.lock): one of its open files is that file and carries a
// flock (/proc/PID/fdinfo lists an open file's locks).
func LockedBy(root string, pid int) bool {
	want, err := os.Stat(lockPath(root))
	if err != nil || pid <= 0 {
		return false
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || !os.SameFile(fi, want) {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err == nil && strings.Contains(string(info), "FLOCK") && strings.Contains(string(info), "WRITE") {
			return true
		}
	}
	return false
}

// LockBusy reports whether the lock beside an embedded root is held, by
// any open file but those of this process that hold it (it tries the lock
// and lets it go at once).
func LockBusy(root string) bool {
	f, err := os.Open(lockPath(root))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

func lockPath(root string) string { return strings.TrimRight(root, "/") + ".lock" }
