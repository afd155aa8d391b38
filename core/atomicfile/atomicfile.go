// Package atomicfile replaces a file so that a crash at any instant leaves
// either the complete old content or the complete new content on disk.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/qvm-dev/qvm/internal/failpoint"
)

// Options say how the new file is made.
type Options struct {
	// Mode of the new file (applied with fchmod, so the umask does not apply).
	Mode os.FileMode
	// Group, when non-empty and present on this system, owns the new file.
	Group string
	// TempPrefix names the temp file (default: base name + "~").
	TempPrefix string
	// Failpoint names the durable step for the hardening tests: it is hit
	// when the temp file is complete and synced, just before the rename.
	Failpoint string
}

// WriteFile writes data to a temp file in path's directory, fsyncs it,
// renames it over path and fsyncs the directory.
func WriteFile(path string, data []byte, opt Options) error {
	return Write(path, opt, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Write is WriteFile with the content produced by fill.
func Write(path string, opt Options, fill func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	prefix := opt.TempPrefix
	if prefix == "" {
		prefix = filepath.Base(path) + "~"
	}
	tmp, err := createTemp(dir, prefix)
	if err != nil {
		return noSpace(path, fmt.Errorf("create temp file for %s: %w", path, err))
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
			err = noSpace(path, err)
		}
	}()
	if err = fill(tmp); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if opt.Mode != 0 {
		if err = tmp.Chmod(opt.Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
		}
	}
	if opt.Group != "" {
		if gid, ok := lookupGroup(opt.Group); ok {
			if err = tmp.Chown(-1, gid); err != nil {
				return fmt.Errorf("chown %s: %w", tmp.Name(), err)
			}
		}
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if opt.Failpoint != "" {
		if err = failpoint.Hit(opt.Failpoint); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	renamed = true
	return SyncDir(dir)
}

// NoSpaceError is a replacement that ran out of space (or quota) on the
// filesystem holding Path: the old file is untouched and the temp file is
// gone, so the message says where space is needed and nothing more.
type NoSpaceError struct {
	Path string
	Err  error // the underlying error, ENOSPC or EDQUOT inside
}

func (e *NoSpaceError) Error() string {
	what := "no space left on device"
	if errors.Is(e.Err, syscall.EDQUOT) {
		what = "disk quota exceeded"
	}
	return fmt.Sprintf("cannot write %s: %s in %s (the old file is unchanged)", e.Path, what, filepath.Dir(e.Path))
}

func (e *NoSpaceError) Unwrap() error { return e.Err }

func noSpace(path string, err error) error {
	var ns *NoSpaceError
	if errors.As(err, &ns) || !(errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		return err
	}
	return &NoSpaceError{Path: path, Err: err}
}

// SyncDir fsyncs a directory so a rename or unlink in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

func createTemp(dir, prefix string) (*os.File, error) {
	for i := 0; i < 100; i++ {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, prefix+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0600)
		if os.IsExist(err) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("no free temp name in %s", dir)
}

func lookupGroup(name string) (int, bool) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, false
	}
	gid, err := strconv.Atoi(g.Gid)
	return gid, err == nil
}
