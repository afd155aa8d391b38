// Package store loads and saves qubes.xml under the locks that keep
// concurrent qvm processes (and a real qubesd) from losing each other's
// changes: an flock on a lock file beside qubes.xml for the whole
// load-change-write (shared for readers), and a POSIX record lock on
// qubes.xml itself while writing, which is what qubesd takes with lockf.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/atomicfile"
)

// Store is one state directory.
type Store struct {
	Dir         string
	Host        core.Host
	LockTimeout time.Duration
	// Log receives load-time notes (loop breaking, migrations).
	Log func(string)
	// BeforeWrite, when set, runs after the new content is ready and before
	// qubes.xml is replaced (crash tests use it).
	BeforeWrite func()
}

// XMLPath is the qubes.xml path.
func (s *Store) XMLPath() string {
	if p := os.Getenv("QUBES_XML_PATH"); p != "" {
		return p
	}
	return filepath.Join(s.Dir, "qubes.xml")
}

func (s *Store) lockPath() string { return s.XMLPath() + ".lock" }

// LockTimeoutError: another process held the lock for too long.
type LockTimeoutError struct {
	Path    string
	Timeout time.Duration
}

func (e *LockTimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for the lock on %s (another qvm is changing the state; raise --lock-timeout to wait longer)", e.Timeout, e.Path)
}

// MissingError: there is no qubes.xml yet.
type MissingError struct{ Path string }

func (e *MissingError) Error() string {
	return fmt.Sprintf("Qubes XML store '%s' is missing; use 'qvm init' to create it", e.Path)
}

func (s *Store) lock(ctx context.Context, exclusive bool) (*flock.Flock, error) {
	if err := os.MkdirAll(filepath.Dir(s.lockPath()), 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	fl := flock.New(s.lockPath(), flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o660))
	timeout := s.LockTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ok bool
	var err error
	if exclusive {
		ok, err = fl.TryLockContext(lctx, 5*time.Millisecond)
	} else {
		ok, err = fl.TryRLockContext(lctx, 5*time.Millisecond)
	}
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, &LockTimeoutError{Path: s.XMLPath(), Timeout: timeout}
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", s.lockPath(), err)
	}
	if !ok {
		return nil, &LockTimeoutError{Path: s.XMLPath(), Timeout: timeout}
	}
	return fl, nil
}

func (s *Store) load() (*core.App, []byte, error) {
	path := s.XMLPath()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, &MissingError{Path: path}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	app, err := core.Parse(data, path, s.Dir, s.Host)
	if err != nil {
		return nil, nil, err
	}
	app.Log = s.Log
	return app, data, nil
}

// View loads the state under a shared lock and calls fn.
func (s *Store) View(ctx context.Context, fn func(*core.App) error) error {
	fl, err := s.lock(ctx, false)
	if err != nil {
		return err
	}
	defer fl.Unlock()
	app, _, err := s.load()
	if err != nil {
		return err
	}
	return fn(app)
}

// Update loads the state under the exclusive lock, calls fn and, if fn
// succeeds and changed anything, writes the result atomically.
func (s *Store) Update(ctx context.Context, fn func(*core.App) error) error {
	fl, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer fl.Unlock()
	app, raw, err := s.load()
	if err != nil {
		return err
	}
	if err := fn(app); err != nil {
		return err
	}
	after := app.Marshal()
	if string(raw) == string(after) {
		return nil // nothing to write: the file already says this
	}
	return s.write(after)
}

// Create writes a new state (qvm init); it refuses to replace an existing one.
func (s *Store) Create(ctx context.Context, app *core.App) error {
	fl, err := s.lock(ctx, true)
	if err != nil {
		return err
	}
	defer fl.Unlock()
	if _, err := os.Stat(s.XMLPath()); err == nil {
		return fmt.Errorf("%s already exists; remove it first to start over", s.XMLPath())
	}
	return s.write(app.Marshal())
}

// write replaces qubes.xml while holding the POSIX record lock a real
// qubesd would take (it re-opens when the file was replaced meanwhile).
func (s *Store) write(data []byte) error {
	path := s.XMLPath()
	var f *os.File
	for i := 0; i < 10; i++ {
		var err error
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o660)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
			f.Close()
			return fmt.Errorf("lock %s: %w", path, err)
		}
		if same(f, path) {
			break
		}
		f.Close()
		f = nil
	}
	if f == nil {
		return fmt.Errorf("lock %s: file keeps being replaced", path)
	}
	defer f.Close() // closing drops the record lock
	if s.BeforeWrite != nil {
		s.BeforeWrite()
	}
	return atomicfile.WriteFile(path, data, atomicfile.Options{Mode: 0o660, Group: "qubes", Failpoint: FailpointWrite})
}

// FailpointWrite is the durable step of replacing qubes.xml.
const FailpointWrite = "qubes.xml.write"

func same(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	if err1 != nil || err2 != nil {
		return false
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino == sb.Ino && sa.Dev == sb.Dev
}
