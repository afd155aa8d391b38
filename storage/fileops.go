package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The file primitives of spec/storage.md §6.2. Every new file is written
// under a temporary name next to its target and renamed into place after
// an fsync, and every directory entry change is followed by an fsync of
// the directory, so a crash leaves either the old or the new file.

// tempName is "<target>~<random>", the reference's temp naming; such names
// are garbage at the next start or remove.
func tempName(target string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return target + "~" + hex.EncodeToString(b[:])
}

func fsyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func fsyncDirs(a, b string) error {
	if err := fsyncDir(filepath.Dir(b)); err != nil {
		return err
	}
	if filepath.Dir(a) != filepath.Dir(b) {
		return fsyncDir(filepath.Dir(a))
	}
	return nil
}

// persist finishes a temp file: chmod 0600, fsync, close, rename onto
// target, fsync the directories. The temp file is removed on error.
func persist(f *os.File, target string) (err error) {
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, target); err != nil {
		return err
	}
	return fsyncDirs(tmp, target)
}

// renameFile renames and fsyncs the directories.
func renameFile(src, dst string) error {
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	return fsyncDirs(src, dst)
}

// removeFile unlinks (a missing file is fine) and fsyncs the directory.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return fsyncDir(filepath.Dir(path))
}

// hardlink replaces dst by a hard link to src.
func hardlink(src, dst string) error {
	// rename(2) onto another link of the same inode does nothing and would
	// leave the temp link behind.
	if a, err := os.Stat(src); err == nil {
		if b, err := os.Stat(dst); err == nil && os.SameFile(a, b) {
			return nil
		}
	}
	tmp := tempName(dst)
	if err := os.Link(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return fsyncDir(filepath.Dir(dst))
}

// resizeFile truncates an existing file and fsyncs it.
func resizeFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// createSparse makes target a sparse file of size bytes (atomically).
func createSparse(target string, size int64) error {
	f, err := os.OpenFile(tempName(target), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	return persist(f, target)
}

// copyOpts tune copyFile.
type copyOpts struct {
	size      int64 // -1: keep the source size; 0: no data at all
	keepMtime bool  // copy mtime (atime set to the same value)
}

// copyFile makes dst a copy of src: a reflink (FICLONE) when the
// filesystem can, else `cp --sparse=always`. It reports whether the copy
// shares extents with src (false for the fallback and for size 0).
func copyFile(ctx context.Context, r Runner, src, dst string, o copyOpts) (reflinked bool, err error) {
	in, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return false, err
	}
	tmp := tempName(dst)
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, err
	}
	fail := func(e error) (bool, error) {
		out.Close()
		os.Remove(tmp)
		return false, e
	}
	if o.size != 0 {
		err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
		switch {
		case err == nil:
			reflinked = true
		case errors.Is(err, unix.EBADF), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.ENOTTY):
			if _, stderr, err := r.Run(ctx, nil, "cp", "--sparse=always", "--", src, tmp); err != nil {
				return fail(fmt.Errorf("cp --sparse=always %s: %v: %s", src, err, strings.TrimSpace(string(stderr))))
			}
		default:
			return fail(fmt.Errorf("reflink %s: %w", src, err))
		}
	}
	if o.size >= 0 {
		if err := out.Truncate(o.size); err != nil {
			return fail(err)
		}
	}
	if o.keepMtime {
		mt := fi.ModTime()
		if err := os.Chtimes(tmp, mt, mt); err != nil {
			return fail(err)
		}
	}
	if err := persist(out, dst); err != nil {
		return false, err
	}
	return reflinked, nil
}

// updateLoopCapacity tells every loop device backed by path that the file
// size changed (LOOP_SET_CAPACITY), as the reference does after a resize
// of a running image.
func updateLoopCapacity(path string) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return
	}
	matches, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil || strings.TrimSpace(string(b)) != real {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(m)))
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		_ = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0)
		f.Close()
	}
}

// blockSize is the unit of import copies (dd bs=128K in the reference).
const blockSize = 128 << 10

// copyExact writes exactly size bytes from r into the existing file or
// device at path (never creating it), leaving all-zero blocks as holes,
// and fdatasyncs. Short or long input is an error naming the counts.
func copyExact(ctx context.Context, path string, r io.Reader, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, blockSize)
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(len(buf))
		if size-done < n {
			n = size - done
		}
		m, err := io.ReadFull(r, buf[:n])
		if m > 0 {
			if isZero(buf[:m]) {
				// A fresh import target reads as zeroes: leave a hole.
			} else if _, werr := f.WriteAt(buf[:m], done); werr != nil {
				return werr
			}
			done += int64(m)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("not enough data (copied %d bytes, expected %d bytes)", done, size)
		}
		if err != nil {
			return err
		}
	}
	var one [1]byte
	if n, _ := io.ReadFull(r, one[:]); n > 0 {
		return fmt.Errorf("too much data (expected %d bytes)", size)
	}
	return unix.Fdatasync(int(f.Fd()))
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// fileOrDeviceSize is the size of a regular file or a block device.
func fileOrDeviceSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	_, err = f.Seek(0, io.SeekStart)
	return n, err
}

// allocated is st_blocks*512 of a file (0 if missing).
func allocated(path string) int64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

func fileSize(path string) (int64, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	return fi.Size(), true
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func isoUTC(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

func timeOf(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }
