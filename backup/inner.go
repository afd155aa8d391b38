package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// extent is a run of file data; the rest of the file is holes.
type extent struct{ off, len int64 }

// dataExtents asks the file system where the data is (SEEK_DATA /
// SEEK_HOLE), rounded out to 512-byte blocks, so holes are never read.
// File systems without the calls report the whole file as data.
func dataExtents(f *os.File, size int64) ([]extent, error) {
	fd := int(f.Fd())
	var out []extent
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return []extent{{0, size}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: SEEK_DATA: %w", f.Name(), err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("%s: SEEK_HOLE: %w", f.Name(), err)
		}
		if end > size {
			end = size
		}
		s := start &^ (block - 1)
		e := (end + block - 1) &^ (block - 1)
		if e > size {
			e = size
		}
		if n := len(out); n > 0 && out[n-1].off+out[n-1].len >= s {
			out[n-1].len = e - out[n-1].off
		} else if e > s {
			out = append(out, extent{s, e - s})
		}
		off = end
	}
	return out, nil
}

// sparseMap is the PAX GNU.sparse 1.0 map: the data runs, plus a final
// empty run at the end of the file when it ends in a hole (or is empty),
// so the extracted file gets its full size.
func sparseMap(ext []extent, size int64) []extent {
	m := append([]extent(nil), ext...)
	if len(m) == 0 || m[len(m)-1].off+m[len(m)-1].len < size {
		m = append(m, extent{size, 0})
	}
	return m
}

// sparseMapText is the map's text form ("<count>\n" then "<off>\n<len>\n"
// per entry) and the data bytes it describes.
func sparseMapText(m []extent) (string, int64) {
	var text strings.Builder
	text.WriteString(strconv.Itoa(len(m)) + "\n")
	var data int64
	for _, e := range m {
		fmt.Fprintf(&text, "%d\n%d\n", e.off, e.len)
		data += e.len
	}
	return text.String(), data
}

// writeSparseMember writes a one-member inner tar for a volume image in
// PAX GNU.sparse 1.0 format (what the reference's tarwriter writes for
// block devices): GNU tar, Go's archive/tar and the stock restore read it.
func writeSparseMember(ctx context.Context, w io.Writer, name string, f *os.File, size int64, ext []extent, buf []byte, done func(int64)) error {
	m := sparseMap(ext, size)
	text, dataLen := sparseMapText(m)
	mapLen := int64(len(text)) + padLen(int64(len(text)))
	dir, base := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		dir, base = name[:i+1], name[i+1:]
	}
	h := tarHeader{
		Name: dir + "GNUSparseFile." + strconv.Itoa(os.Getpid()) + "/" + base,
		Size: mapLen + dataLen, Mode: 0o644, Typeflag: '0',
		PAX: [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
			{"GNU.sparse.name", name}, {"GNU.sparse.realsize", strconv.FormatInt(size, 10)}},
	}
	if err := writeHeader(w, h); err != nil {
		return err
	}
	if err := writePadded(w, []byte(text)); err != nil {
		return err
	}
	for _, e := range m {
		for off := e.off; off < e.off+e.len; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(int64(len(buf)), e.off+e.len-off)
			got, err := f.ReadAt(buf[:n], off)
			if int64(got) < n {
				if err == nil || err == io.EOF {
					err = fmt.Errorf("%s changed size while being read", f.Name())
				}
				return err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			done(n)
			off += n
		}
	}
	if _, err := w.Write(zeros[:padLen(dataLen)]); err != nil {
		return err
	}
	return writeEnd(w, 0, false)
}

// writeFileMember writes a one-member inner tar for a small regular file.
func writeFileMember(w io.Writer, name string, data []byte, mtime int64) error {
	if err := writeHeader(w, tarHeader{Name: name, Size: int64(len(data)), Mode: 0o644, Mtime: mtime, Typeflag: '0'}); err != nil {
		return err
	}
	if err := writePadded(w, data); err != nil {
		return err
	}
	return writeEnd(w, 0, false)
}
