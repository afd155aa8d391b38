package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// HomePrefix starts the archive name of dom0's home tree: dom0-home/<user>.
const HomePrefix = "dom0-home/"

// TreeUsage is the reference's size estimate of a directory tree: the
// on-disk usage (st_blocks·512) of every entry, symlinks not followed.
// It also returns the apparent size of its regular files and the number
// of entries, for TreeBound.
func TreeUsage(root string) (usage, data, entries int64, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil // vanished meanwhile
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		entries++
		if fi.Mode().IsRegular() {
			data += fi.Size()
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			usage += st.Blocks * 512
		}
		return nil
	})
	return usage, data, entries, err
}

// TreeBound bounds the archive bytes of a tree of entries entries and
// data bytes (each entry: a header block, a PAX header for long names or
// a sparse map, and padding).
func TreeBound(data, entries, chunkSize int64) int64 {
	return FileBound(data, entries*(4*block), chunkSize)
}

// writeTree writes the inner tar of a directory tree as `tar -c --sparse`
// without --dereference writes it: the directory itself as name, then
// every entry below it as name/relative/path (sorted, so two runs over
// the same tree give the same archive). Symlinks are stored as links,
// second and later names of a file as hard links, files with holes as
// PAX GNU.sparse 1.0 members. Sockets cannot be archived and are left
// out with a warning, as tar does; an entry that vanishes while the tree
// is read is skipped with a warning; any other error fails the backup,
// so that a backup never silently lacks a file.
func writeTree(ctx context.Context, w io.Writer, name, root string, o Options, buf []byte) error {
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	progress := o.Progress
	if progress == nil {
		progress = func(int64) {}
	}
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	var walk func(dir, arch string) error
	entry := func(p, arch string, fi os.FileInfo) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&fs.ModeSocket != 0 {
			warn(fmt.Sprintf("%s: socket ignored", p))
			return nil
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			target = t
		}
		h, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name = arch
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		h.ModTime = fi.ModTime().Truncate(time.Second)
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		h.Format = tar.FormatUnknown
		var id inode
		if st != nil && fi.Mode().IsRegular() && st.Nlink > 1 {
			id = inode{uint64(st.Dev), st.Ino}
			if first, ok := links[id]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(h)
			}
		}
		if !fi.Mode().IsRegular() {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if fi.IsDir() {
				return walk(p, arch)
			}
			return nil
		}
		written, err := writeTreeFile(ctx, tw, w, h, p, buf, progress, warn)
		if written && id != (inode{}) {
			// Later names of this file become hard links to this one
			// (only once it is in the archive).
			links[id] = arch
		}
		return err
	}
	walk = func(dir, arch string) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				warn(fmt.Sprintf("%s: removed before it was read", dir))
				return nil
			}
			return err
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			fi, err := os.Lstat(p)
			if errors.Is(err, fs.ErrNotExist) {
				warn(fmt.Sprintf("%s: removed before it was read", p))
				continue
			}
			if err != nil {
				return err
			}
			if err := entry(p, arch+"/"+e.Name(), fi); err != nil {
				return err
			}
		}
		return nil
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", root)
	}
	if err := entry(root, name, fi); err != nil {
		return err
	}
	return tw.Close()
}

// writeTreeFile writes one regular file of a tree; a file with holes
// becomes a PAX GNU.sparse 1.0 member (map, then the data runs). A file
// that shrinks while it is read is padded with zeros to the size in its
// header and one that grows is cut there, with a warning, as tar does.
func writeTreeFile(ctx context.Context, tw *tar.Writer, raw io.Writer, h *tar.Header, p string, buf []byte, progress func(int64), warn func(string)) (bool, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		warn(fmt.Sprintf("%s: removed before it was read", p))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	size := h.Size
	ext, err := dataExtents(f, size)
	if err != nil {
		return false, err
	}
	var data int64
	for _, e := range ext {
		data += e.len
	}
	var out io.Writer = tw
	if data+4*block < size {
		text, _ := sparseMapText(sparseMap(ext, size))
		mapLen := int64(len(text)) + padLen(int64(len(text)))
		// archive/tar drops GNU.sparse records, so this member is written
		// by hand after the previous one's padding.
		if err := tw.Flush(); err != nil {
			return false, err
		}
		dir, base := path.Split(h.Name)
		th := tarHeader{Name: dir + "GNUSparseFile.0/" + base, Size: mapLen + data, Mode: h.Mode,
			Mtime: h.ModTime.Unix(), Typeflag: '0', UID: int64(h.Uid), GID: int64(h.Gid),
			PAX: [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
				{"GNU.sparse.name", h.Name}, {"GNU.sparse.realsize", strconv.FormatInt(size, 10)}}}
		if err := writeHeader(raw, th); err != nil {
			return false, err
		}
		if err := writePadded(raw, []byte(text)); err != nil {
			return false, err
		}
		out = raw
	} else {
		ext = []extent{{0, size}}
		if err := tw.WriteHeader(h); err != nil {
			return false, err
		}
	}
	changed := false
	var written int64
	for _, e := range ext {
		for off := e.off; off < e.off+e.len; {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			n := min(int64(len(buf)), e.off+e.len-off)
			got, err := f.ReadAt(buf[:n], off)
			if err != nil && err != io.EOF {
				return false, err
			}
			if int64(got) < n {
				changed = true
				clear(buf[got:n])
			}
			if _, err := out.Write(buf[:n]); err != nil {
				return false, err
			}
			written += n
			progress(n)
			off += n
		}
	}
	if st, err := f.Stat(); err == nil && st.Size() != size || changed {
		warn(fmt.Sprintf("%s: file changed as we read it", p))
	}
	if out == raw {
		_, err = raw.Write(zeros[:padLen(written)])
		return err == nil, err
	}
	return true, nil
}
