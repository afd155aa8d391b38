package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Tar pieces written by hand: the outer tar must stay as plain as the
// stock restore expects (regular ustar members only), and the inner PAX
// GNU.sparse 1.0 members are something archive/tar does not write.

const block = 512

// tarHeader is what we write and read of a ustar header.
type tarHeader struct {
	Name     string
	Size     int64
	Mode     int64
	Mtime    int64
	Typeflag byte
	PAX      [][2]string // extra pax records, in order
	// Owner ids; 0 (root) for everything but a home tree's files.
	UID, GID int64
}

func octal(dst []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	pad := len(dst) - 1 - len(s)
	for i := 0; i < pad; i++ {
		dst[i] = '0'
	}
	copy(dst[pad:], s)
	dst[len(dst)-1] = 0
}

func ustarBlock(name string, size, mode, mtime int64, typeflag byte, uid, gid int64) []byte {
	b := make([]byte, block)
	copy(b[0:100], name)
	octal(b[100:108], mode)
	octal(b[108:116], uid)
	octal(b[116:124], gid)
	octal(b[124:136], size)
	octal(b[136:148], mtime)
	b[156] = typeflag
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	if uid == 0 {
		copy(b[265:297], "root")
	}
	if gid == 0 {
		copy(b[297:329], "root")
	}
	octal(b[329:337], 0)
	octal(b[337:345], 0)
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3 // " ", "=", "\n"
	l := len(strconv.Itoa(n))
	for len(strconv.Itoa(n+l)) != l {
		l++
	}
	return fmt.Sprintf("%d %s=%s\n", n+l, k, v)
}

// maxOctalSize is the largest size an 11-digit octal field holds.
const maxOctalSize = 1<<33 - 1

// writeHeader writes a member header: a pax extended header first when
// records are given or the name or size does not fit ustar.
func writeHeader(w io.Writer, h tarHeader) error {
	recs := h.PAX
	name := h.Name
	if len(name) > 99 {
		recs = append(recs, [2]string{"path", name})
		name = name[len(name)-99:]
	}
	size := h.Size
	if size > maxOctalSize {
		recs = append(recs, [2]string{"size", strconv.FormatInt(size, 10)})
		size = 0
	}
	if len(recs) > 0 {
		var pax strings.Builder
		for _, r := range recs {
			pax.WriteString(paxRecord(r[0], r[1]))
		}
		xname := "PaxHeaders/" + baseName(name)
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			xname = name[:i] + "/PaxHeaders/" + name[i+1:]
		}
		if len(xname) > 99 {
			xname = xname[:99]
		}
		if _, err := w.Write(ustarBlock(xname, int64(pax.Len()), 0o644, h.Mtime, 'x', 0, 0)); err != nil {
			return err
		}
		if err := writePadded(w, []byte(pax.String())); err != nil {
			return err
		}
	}
	_, err := w.Write(ustarBlock(name, size, h.Mode, h.Mtime, h.Typeflag, h.UID, h.GID))
	return err
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func padLen(n int64) int64 { return (block - n%block) % block }

var zeros = make([]byte, 20*block)

func writePadded(w io.Writer, data []byte) error {
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(zeros[:padLen(int64(len(data)))])
	return err
}

// writeEnd writes the end-of-archive zero blocks; record pads the stream
// to GNU tar's 10240-byte record (outer archive) when written is known.
func writeEnd(w io.Writer, written int64, record bool) error {
	n := int64(2 * block)
	if record {
		n += (10240 - (written+n)%10240) % 10240
	}
	for n > 0 {
		m := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// countWriter counts bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// tarReader reads the members of a (possibly concatenated) tar stream,
// skipping the zero blocks between archives like `tar -i`. Only regular
// files are accepted; anything else is refused by name, since the outer
// archive is parsed before anything is authenticated.
type tarReader struct {
	r      io.Reader
	remain int64 // unread data of the current member
	pad    int64
	buf    [block]byte
	// Offset counts bytes consumed, for messages.
	Offset int64
	// inner: any member type is returned (the caller decides), and the
	// member's pax records are kept in pax.
	inner bool
	pax   map[string]string
}

// ErrTruncated is a stream that ends inside a member.
var ErrTruncated = errors.New("archive is truncated")

func (t *tarReader) readFull(p []byte) error {
	n, err := io.ReadFull(t.r, p)
	t.Offset += int64(n)
	if err == io.ErrUnexpectedEOF || (err == io.EOF && n == 0 && len(p) > 0) {
		return ErrTruncated
	}
	return err
}

// maxPAX bounds extended headers: ours are a few hundred bytes.
const maxPAX = 64 << 10

// Next advances to the next member; io.EOF at the end of the stream.
func (t *tarReader) Next() (*tarHeader, error) {
	if err := t.skip(); err != nil {
		return nil, err
	}
	var longName string
	var paxRecs map[string]string
	for {
		n, err := io.ReadFull(t.r, t.buf[:])
		t.Offset += int64(n)
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, ErrTruncated
		}
		if bytes.Equal(t.buf[:], zeros[:block]) {
			continue
		}
		h, err := parseUstar(t.buf[:])
		if err != nil {
			return nil, fmt.Errorf("at byte %d: %w", t.Offset-block, err)
		}
		switch h.Typeflag {
		case 'x', 'g', 'L':
			if h.Size > maxPAX {
				return nil, fmt.Errorf("at byte %d: extended header of %d bytes is too large", t.Offset-block, h.Size)
			}
			data := make([]byte, h.Size+padLen(h.Size))
			if err := t.readFull(data); err != nil {
				return nil, err
			}
			data = data[:h.Size]
			switch h.Typeflag {
			case 'L':
				longName = strings.TrimRight(string(data), "\x00")
			case 'x':
				if paxRecs, err = parsePAX(data); err != nil {
					return nil, fmt.Errorf("at byte %d: %w", t.Offset, err)
				}
			}
			continue
		case '0', 0:
		default:
			if t.inner {
				break
			}
			return nil, fmt.Errorf("member %q is not a regular file (type %q); a backup holds regular files only", h.Name, h.Typeflag)
		}
		if longName != "" {
			h.Name = longName
		}
		if p, ok := paxRecs["path"]; ok {
			h.Name = p
		}
		if s, ok := paxRecs["size"]; ok {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("member %q: bad pax size %q", h.Name, s)
			}
			h.Size = n
		}
		t.remain, t.pad = h.Size, padLen(h.Size)
		t.pax = paxRecs
		return h, nil
	}
}

// Read reads the current member's data.
func (t *tarReader) Read(p []byte) (int, error) {
	if t.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > t.remain {
		p = p[:t.remain]
	}
	n, err := t.r.Read(p)
	t.remain -= int64(n)
	t.Offset += int64(n)
	if err == io.EOF && t.remain > 0 {
		return n, ErrTruncated
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

func (t *tarReader) skip() error {
	n := t.remain + t.pad
	t.remain, t.pad = 0, 0
	if n == 0 {
		return nil
	}
	m, err := io.CopyN(io.Discard, t.r, n)
	t.Offset += m
	if err != nil {
		return ErrTruncated
	}
	return nil
}

func parseUstar(b []byte) (*tarHeader, error) {
	var unsigned, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	want, err := parseNumeric(b[148:156])
	if err != nil || (want != unsigned && want != signed) {
		return nil, errors.New("not a tar header (checksum mismatch)")
	}
	h := &tarHeader{Typeflag: b[156]}
	name := cstr(b[0:100])
	if string(b[257:262]) == "ustar" {
		if prefix := cstr(b[345:500]); prefix != "" {
			name = prefix + "/" + name
		}
	}
	h.Name = name
	if h.Size, err = parseNumeric(b[124:136]); err != nil || h.Size < 0 {
		return nil, fmt.Errorf("member %q: bad size field", name)
	}
	h.Mode, _ = parseNumeric(b[100:108])
	h.Mtime, _ = parseNumeric(b[136:148])
	return h, nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseNumeric reads an octal field or GNU base-256.
func parseNumeric(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0] != 0x80 || len(b) > 9 && bytes.IndexFunc(b[1:len(b)-8], func(r rune) bool { return r != 0 }) >= 0 {
			return 0, errors.New("numeric field out of range")
		}
		var v int64
		for _, c := range b[len(b)-8:] {
			v = v<<8 | int64(c)
		}
		if v < 0 {
			return 0, errors.New("numeric field out of range")
		}
		return v, nil
	}
	s := strings.TrimRight(strings.TrimLeft(string(b), " "), " \x00")
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 8, 64)
}

func parsePAX(data []byte) (map[string]string, error) {
	out := map[string]string{}
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp <= 0 {
			return nil, errors.New("malformed pax header")
		}
		n, err := strconv.Atoi(string(data[:sp]))
		if err != nil || n <= sp+1 || n > len(data) || data[n-1] != '\n' {
			return nil, errors.New("malformed pax header")
		}
		kv := string(data[sp+1 : n-1])
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, errors.New("malformed pax record")
		}
		out[k] = v
		data = data[n:]
	}
	return out, nil
}
