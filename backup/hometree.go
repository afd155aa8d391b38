package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// TreeOptions of ExtractTree.
type TreeOptions struct {
	// Prefix every member name must be or start with ("dom0-home/user").
	Prefix string
	// UID and GID own everything extracted (the reference chowns the
	// restored home to the dom0 user); -1 leaves root's.
	UID, GID int
	// Warn gets the entries that are left out (devices, unknown types).
	Warn func(msg string)
	// MaxBytes bounds the logical size of all files together (holes
	// count: a crafted sparse member could otherwise make the restore
	// read zeros for ever); 0 means no bound.
	MaxBytes int64
}

// SizeLimitError is a tree larger than TreeOptions.MaxBytes.
type SizeLimitError struct {
	Name  string
	Limit int64
}

func (e *SizeLimitError) Error() string {
	return fmt.Sprintf("%s: the tree holds more than the %d bytes its backup-size allows", e.Name, e.Limit)
}

// TreeStats counts what ExtractTree made.
type TreeStats struct {
	Dirs, Files, Links, Skipped int
	Bytes                       int64
}

// maxTreeName bounds a member name (PATH_MAX).
const maxTreeName = 4096

// ExtractTree extracts a directory tree archive (an inner tar, already
// authenticated and decompressed) beneath root, which must exist. It
// never writes outside root: names must be relative, below opts.Prefix,
// without "." or ".." components; no symlink is ever followed (each path
// component is opened with O_NOFOLLOW, so a symlink member cannot
// redirect a later member); nothing existing is overwritten; hard links
// must point at an earlier member. Permission bits are kept without
// setuid, setgid and sticky; devices are left out with a warning.
func ExtractTree(ctx context.Context, r io.Reader, root string, o TreeOptions) (TreeStats, error) {
	var stats TreeStats
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return stats, fmt.Errorf("%s: %w", root, err)
	}
	defer unix.Close(rootfd)
	x := &treeExtractor{root: rootfd, uid: o.UID, gid: o.GID}
	type dirMeta struct {
		comps []string
		mode  uint32
		mtime unix.Timespec
	}
	var dirs []dirMeta
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	pool := newFilePool(x)
	defer pool.close()
	for {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return stats, fmt.Errorf("inner archive: %w", noEOF(err))
		}
		comps, err := treePath(h.Name, o.Prefix)
		if err != nil {
			return stats, err
		}
		mode := uint32(h.Mode) & 0o777
		mtime := unix.NsecToTimespec(h.ModTime.UnixNano())
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeGNUSparse {
			// Everything else sees the files before it in place (a hard
			// link needs its target; a name taken twice is refused the
			// same way whatever the order).
			if err := pool.wait(); err != nil {
				return stats, err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := x.mkdir(comps, mtime); err != nil {
				return stats, fmt.Errorf("%s: %w", h.Name, err)
			}
			dirs = append(dirs, dirMeta{comps, mode, mtime})
			stats.Dirs++
		case tar.TypeReg, tar.TypeGNUSparse: // archive/tar reports the old TypeRegA as TypeReg
			if o.MaxBytes > 0 && h.Size > o.MaxBytes-stats.Bytes {
				return stats, &SizeLimitError{Name: h.Name, Limit: o.MaxBytes}
			}
			if h.Size <= smallFile {
				// Small files are created by a few workers at once: a
				// home is mostly small files, and creating one costs far
				// more than writing it.
				if err := pool.add(h.Name, comps, tr, h.Size, mode, mtime); err != nil {
					return stats, err
				}
				stats.Files++
				stats.Bytes += h.Size
				continue
			}
			n, err := x.file(comps, tr, h.Size, mode, mtime, buf)
			if err != nil {
				return stats, fmt.Errorf("%s: %w", h.Name, err)
			}
			stats.Files++
			stats.Bytes += n
		case tar.TypeSymlink:
			if err := x.symlink(comps, h.Linkname, mtime); err != nil {
				return stats, fmt.Errorf("%s: %w", h.Name, err)
			}
			stats.Links++
		case tar.TypeLink:
			old, err := treePath(h.Linkname, o.Prefix)
			if err != nil {
				return stats, fmt.Errorf("hard link %s: %w", h.Name, err)
			}
			if err := x.link(old, comps); err != nil {
				return stats, fmt.Errorf("%s: %w", h.Name, err)
			}
			stats.Links++
		case tar.TypeFifo:
			if err := x.fifo(comps, mode, mtime); err != nil {
				return stats, fmt.Errorf("%s: %w", h.Name, err)
			}
			stats.Files++
		default:
			warn(fmt.Sprintf("%s: %s left out", h.Name, treeKind(h.Typeflag)))
			stats.Skipped++
		}
	}
	if err := pool.wait(); err != nil {
		return stats, err
	}
	// Directory modes and times last, deepest first: writing into a
	// directory changes its mtime, and a read-only one would refuse it.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := x.finishDir(dirs[i].comps, dirs[i].mode, dirs[i].mtime); err != nil {
			return stats, fmt.Errorf("%s: %w", strings.Join(dirs[i].comps, "/"), err)
		}
	}
	return stats, nil
}

// smallFile is the largest file the worker pool takes (held in memory
// meanwhile: at most filePoolBufs of them).
const (
	smallFile     = 256 << 10
	fileWorkers   = 4
	filePoolBufs  = 2 * fileWorkers
	filePoolSlack = 64 << 10
)

type fileJob struct {
	name  string
	comps []string
	data  []byte
	mode  uint32
	mtime unix.Timespec
}

// filePool creates small files concurrently.
type filePool struct {
	x    *treeExtractor
	jobs chan fileJob
	free chan []byte
	wg   sync.WaitGroup // jobs in flight
	done sync.WaitGroup // workers
	mu   sync.Mutex
	err  error
}

func newFilePool(x *treeExtractor) *filePool {
	p := &filePool{x: x, jobs: make(chan fileJob), free: make(chan []byte, filePoolBufs)}
	for i := 0; i < filePoolBufs; i++ {
		p.free <- nil
	}
	for i := 0; i < fileWorkers; i++ {
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			buf := make([]byte, filePoolSlack)
			for j := range p.jobs {
				if _, err := x.file(j.comps, bytes.NewReader(j.data), int64(len(j.data)), j.mode, j.mtime, buf); err != nil {
					p.mu.Lock()
					if p.err == nil {
						p.err = fmt.Errorf("%s: %w", j.name, err)
					}
					p.mu.Unlock()
				}
				p.free <- j.data[:0]
				p.wg.Done()
			}
		}()
	}
	return p
}

// add reads the file's data and queues its creation.
func (p *filePool) add(name string, comps []string, r io.Reader, size int64, mode uint32, mtime unix.Timespec) error {
	b := <-p.free
	if int64(cap(b)) < size {
		b = make([]byte, size, smallFile)
	}
	b = b[:size]
	if _, err := io.ReadFull(r, b); err != nil {
		p.free <- b[:0]
		return fmt.Errorf("%s: inner archive: %w", name, noEOF(err))
	}
	p.mu.Lock()
	err := p.err
	p.mu.Unlock()
	if err != nil {
		p.free <- b[:0]
		return err
	}
	p.wg.Add(1)
	p.jobs <- fileJob{name: name, comps: comps, data: b, mode: mode, mtime: mtime}
	return nil
}

// wait lets every queued file be created and reports the first error.
func (p *filePool) wait() error {
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *filePool) close() {
	close(p.jobs)
	p.done.Wait()
}

func treeKind(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	}
	return fmt.Sprintf("member of type %q", t)
}

// treePath checks a member name and splits it into components.
func treePath(name, prefix string) ([]string, error) {
	clean := strings.TrimSuffix(name, "/")
	if len(name) > maxTreeName || strings.IndexByte(name, 0) >= 0 {
		return nil, formatErr("refused member %q: name too long or with a NUL byte", name)
	}
	if clean != prefix && !strings.HasPrefix(clean, prefix+"/") {
		return nil, formatErr("refused member %q: outside %s/", name, prefix)
	}
	comps := strings.Split(clean, "/")
	for _, c := range comps {
		if c == "" || c == "." || c == ".." {
			return nil, formatErr("refused member %q: empty, . or .. path component", name)
		}
	}
	return comps, nil
}

// treeExtractor creates entries relative to a root directory fd.
type treeExtractor struct {
	root     int
	uid, gid int
}

// parent opens the directory holding comps' last component, creating
// missing directories (as tar does) when create is set; no component may
// be a symlink.
func (x *treeExtractor) parent(comps []string, create bool) (int, error) {
	fd, err := unix.Dup(x.root)
	if err != nil {
		return -1, err
	}
	for _, c := range comps[:len(comps)-1] {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, c, 0o700); err == nil || errors.Is(err, unix.EEXIST) {
				x.chown(fd, c)
				next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("path component %s is not a directory (a symlink is never followed)", c)
		}
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

func (x *treeExtractor) chown(dirfd int, name string) {
	if x.uid >= 0 || x.gid >= 0 {
		_ = unix.Fchownat(dirfd, name, x.uid, x.gid, unix.AT_SYMLINK_NOFOLLOW)
	}
}

func (x *treeExtractor) mkdir(comps []string, mtime unix.Timespec) error {
	return x.node(comps, mtime, func(pfd int, base string) error {
		err := unix.Mkdirat(pfd, base, 0o700)
		if errors.Is(err, unix.EEXIST) {
			// A directory listed again (or made for an earlier child) is
			// fine; anything else in its place is not.
			var st unix.Stat_t
			if serr := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return nil
			}
			return fmt.Errorf("exists and is not a directory")
		}
		return err
	})
}

// file writes a regular file; blocks of zeros become holes again.
func (x *treeExtractor) file(comps []string, r io.Reader, size int64, mode uint32, mtime unix.Timespec, buf []byte) (int64, error) {
	pfd, err := x.parent(comps, true)
	if err != nil {
		return 0, err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, comps[len(comps)-1], unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return 0, fmt.Errorf("appears twice in the archive")
	}
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var off int64
	for off < size {
		n, rerr := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if n > 0 {
			if err := writeSkippingZeros(fd, buf[:n], off); err != nil {
				return off, err
			}
			off += int64(n)
		}
		if rerr != nil {
			return off, fmt.Errorf("inner archive: %w", noEOF(rerr))
		}
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		return off, err
	}
	if x.uid >= 0 || x.gid >= 0 {
		if err := unix.Fchown(fd, x.uid, x.gid); err != nil {
			return off, err
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return off, err
	}
	tv := unix.NsecToTimeval(mtime.Nano())
	return off, unix.Futimes(fd, []unix.Timeval{tv, tv})
}

// writeSkippingZeros writes p at off, leaving 4 KiB blocks of zeros
// unwritten (the final ftruncate gives the file its size).
func writeSkippingZeros(fd int, p []byte, off int64) error {
	const blk = 4096
	for len(p) > 0 {
		n := min(len(p), blk-int(off%blk))
		// Extend a data run over the following non-zero blocks.
		if !isZero(p[:n]) {
			for n < len(p) && !isZero(p[n:min(len(p), n+blk)]) {
				n = min(len(p), n+blk)
			}
			for done := 0; done < n; {
				w, err := unix.Pwrite(fd, p[done:n], off+int64(done))
				if err != nil {
					return err
				}
				done += w
			}
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= len(zeros) {
		if !bytes.Equal(b[:len(zeros)], zeros[:]) {
			return false
		}
		b = b[len(zeros):]
	}
	return bytes.Equal(b, zeros[:len(b)])
}

func (x *treeExtractor) symlink(comps []string, target string, mtime unix.Timespec) error {
	if target == "" || strings.IndexByte(target, 0) >= 0 || len(target) > maxTreeName {
		return formatErr("refused symlink target %q", target)
	}
	return x.node(comps, mtime, func(pfd int, base string) error { return unix.Symlinkat(target, pfd, base) })
}

// node makes a directory, symlink or fifo with mk, then gives it its
// owner and time (a directory's final mode and time come at the end).
func (x *treeExtractor) node(comps []string, mtime unix.Timespec, mk func(pfd int, base string) error) error {
	pfd, err := x.parent(comps, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	base := comps[len(comps)-1]
	if err := mk(pfd, base); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("appears twice in the archive")
		}
		return err
	}
	x.chown(pfd, base)
	return unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
}

func (x *treeExtractor) link(old, comps []string) error {
	ofd, err := x.parent(old, false)
	if err != nil {
		return fmt.Errorf("hard link target %s: %w", strings.Join(old, "/"), err)
	}
	defer unix.Close(ofd)
	var st unix.Stat_t
	if err := unix.Fstatat(ofd, old[len(old)-1], &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("hard link target %s is not an earlier regular file", strings.Join(old, "/"))
	}
	pfd, err := x.parent(comps, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	// Flags 0: linkat does not follow a symlink at the old path.
	if err := unix.Linkat(ofd, old[len(old)-1], pfd, comps[len(comps)-1], 0); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("appears twice in the archive")
		}
		return err
	}
	return nil
}

func (x *treeExtractor) fifo(comps []string, mode uint32, mtime unix.Timespec) error {
	// The mode goes in at creation (the umask applies): a chmod by name
	// afterwards could be redirected by a symlink swapped in meanwhile.
	return x.node(comps, mtime, func(pfd int, base string) error { return unix.Mknodat(pfd, base, unix.S_IFIFO|mode, 0) })
}

func (x *treeExtractor) finishDir(comps []string, mode uint32, mtime unix.Timespec) error {
	pfd, err := x.parent(comps, false)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	fd, err := unix.Openat(pfd, comps[len(comps)-1], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, mode); err != nil {
		return err
	}
	tv := unix.NsecToTimeval(mtime.Nano())
	return unix.Futimes(fd, []unix.Timeval{tv, tv})
}

// TreeSink is where Extract sends a tree's inner tar stream: it extracts
// it with ExtractTree as the bytes arrive. Close reports the outcome.
type TreeSink struct {
	pw    *io.PipeWriter
	done  chan error
	Stats TreeStats
}

// NewTreeSink starts extracting beneath root.
func NewTreeSink(ctx context.Context, root string, o TreeOptions) *TreeSink {
	pr, pw := io.Pipe()
	s := &TreeSink{pw: pw, done: make(chan error, 1)}
	go func() {
		st, err := ExtractTree(ctx, pr, root, o)
		s.Stats = st
		if err == nil {
			// The end blocks and the record padding after the last member.
			_, err = io.Copy(io.Discard, pr)
		}
		pr.CloseWithError(err)
		s.done <- err
	}()
	return s
}

func (s *TreeSink) Write(p []byte) (int, error) { return s.pw.Write(p) }

// Close ends the stream and waits for the extraction.
func (s *TreeSink) Close() error {
	s.pw.Close()
	return <-s.done
}

// Abort stops the extraction with err.
func (s *TreeSink) Abort(err error) {
	s.pw.CloseWithError(err)
	<-s.done
}
