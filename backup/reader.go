package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ReadOptions of OpenArchive.
type ReadOptions struct {
	Passphrase string
	// Filter forces the compression filter (-Z), bypassing the header's.
	Filter string
	// MaxKDFMemory bounds the scrypt memory a chunk may ask for, and
	// that of all derivations running at once; 0 means half of the RAM,
	// the scrypt tool's own limit.
	MaxKDFMemory uint64
	// MaxExpansion bounds how many times larger than its compressed bytes
	// an inner archive may decompress to (past the first 64 MiB, which
	// any ratio may reach): a small crafted archive cannot make the
	// restore write or read without end. 0 means DefaultMaxExpansion; a
	// negative value turns the check off.
	MaxExpansion int64
}

// DefaultMaxExpansion is above gzip's largest possible ratio (about
// 1032:1), so a gzip backup, the default, never trips it; bzip2 and xz
// streams of long zero runs can, and qvm restore --max-expansion lifts it.
const DefaultMaxExpansion = 2000

// expansionFloor is what any inner archive may decompress to regardless
// of the ratio.
const expansionFloor = 64 << 20

// Archive is an opened backup: authenticated header and qubes.xml, and
// the rest of the stream ready for Extract.
type Archive struct {
	Header   *Header
	QubesXML []byte
	// Params of the header's container (format 4), for -v.
	Params Params
	tr     *tarReader
	o      ReadOptions
	kdf    *kdfLimit
	// v3: openssl key material and the pending member after qubes.xml.
	v3 *v3State
	// ahead derives chunk keys ahead of the stream, from OpenArchive on
	// (its first guess: every qube) and during Extract.
	ahead *keyAhead
}

// Limits of the reference restore on metadata, kept here.
const (
	maxHMACSize     = 4096
	maxMetadataSize = 1 << 20
	maxQubesXML     = 64 << 20 // decompressed
)

// FormatError is a refused archive: the message names the member and why.
type FormatError struct{ Msg string }

func (e *FormatError) Error() string { return e.Msg }

func formatErr(format string, args ...any) error {
	return &FormatError{Msg: fmt.Sprintf(format, args...)}
}

func halfRAM() uint64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 1 << 30
	}
	return uint64(si.Totalram) * uint64(si.Unit) / 2
}

// OpenArchive reads and authenticates the header and the qubes.xml copy.
func OpenArchive(ctx context.Context, r io.Reader, o ReadOptions) (*Archive, error) {
	maxMem := o.MaxKDFMemory
	if maxMem == 0 {
		maxMem = halfRAM()
	}
	a := &Archive{tr: &tarReader{r: r}, o: o, kdf: newKDFLimit(maxMem)}
	hdr, err := a.small("backup-header", maxHMACSize)
	if err != nil {
		return nil, err
	}
	mac, err := a.small("backup-header.hmac", maxHMACSize)
	if err != nil {
		return nil, err
	}
	// Format 4: read the qubes.xml member now and derive its key with
	// the header's (xmlahead.go); nothing of it is used unless the header
	// then authenticates.
	var xa *xmlAhead
	if pre, err := ParseHeader(hdr, o.Filter); err == nil && pre.Version == 4 && bytes.HasPrefix(mac, []byte("scrypt")) {
		xa = a.readXMLAhead(pre.BackupID)
		if ra, ok := r.(io.ReaderAt); ok && xa.err == nil {
			// A file: the other core derives the first chunks' keys
			// meanwhile, for every qube, since which ones the restore
			// wants is not known yet (Extract narrows it). Nothing is
			// used unless the header authenticates with this backup-id.
			id, pass := pre.BackupID, o.Passphrase
			a.ahead = startKeyAhead(ctx, ra, a.tr.Offset+a.tr.remain+a.tr.pad, id,
				func(name string) string { return chunkPass(id, name, pass) }, nil, a.kdf)
		}
	}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if bytes.HasPrefix(mac, []byte("scrypt")) {
		p, _ := ContainerParams(mac)
		a.Params = p
		pass := []byte("backup-header!" + o.Passphrase)
		var hk *Key
		if xa != nil && xa.err == nil {
			r := openHeaders2([2][]byte{pass, xa.pass(a)}, [2][]byte{mac, xa.data}, a.kdf)
			hk, err = r[0].k, r[0].err
			xa.key = &r[1]
		} else {
			hk, err = openHeader(pass, mac, a.kdf)
		}
		var plain []byte
		if err == nil {
			plain, err = hk.open(mac)
		}
		if err != nil && !errors.Is(err, ErrBadPassword) && !errors.Is(err, ErrCorruptBlock) {
			return nil, formatErr("backup-header.hmac: %v", err)
		}
		if err != nil || !bytes.Equal(plain, hdr) {
			return nil, formatErr("Corrupted backup header (hmac verification failed). Is the password correct?")
		}
	} else if !verifyOpensslHMAC(hdr, mac, o.Passphrase) {
		return nil, formatErr("Corrupted backup header (hmac verification failed). Is the password correct?")
	}
	h, err := ParseHeader(hdr, o.Filter)
	if err != nil {
		return nil, err
	}
	a.Header = h
	if h.Version == 3 {
		if err := a.openV3(ctx); err != nil {
			return nil, err
		}
		ok = true
		return a, nil
	}
	if xa == nil {
		xa = a.readXMLAhead(h.BackupID)
	} else if xa.id != h.BackupID {
		return nil, formatErr("backup-header: backup-id changed while reading") // the same bytes were parsed
	}
	plain, err := xa.open(a)
	if err != nil {
		return nil, formatErr("failed to decrypt qubes.xml.000.enc: %v", err)
	}
	xml, err := innerFile(plain, a.filter(), "qubes.xml", maxQubesXML)
	if err != nil {
		return nil, formatErr("qubes.xml.000.enc: %v", err)
	}
	a.QubesXML = xml
	ok = true
	return a, nil
}

// Close stops the key look-ahead and frees the KDF's work areas
// (Extract does too when it ends); derivations in flight end on their own.
func (a *Archive) Close() {
	a.stopAhead()
	a.kdf.close()
}

func (a *Archive) stopAhead() {
	if a.ahead != nil {
		a.ahead.close()
		a.ahead = nil
	}
}

func (a *Archive) filter() string {
	if !a.Header.Compressed {
		return ""
	}
	return a.Header.CompressionFilter
}

func (a *Archive) eofErr(err error, want string) error {
	if err == io.EOF || errors.Is(err, ErrTruncated) {
		return formatErr("archive is truncated: %s is missing", want)
	}
	return formatErr("%v", err)
}

// small reads a metadata member that must come next, with a size limit.
func (a *Archive) small(name string, limit int64) ([]byte, error) {
	m, err := a.tr.Next()
	if err == io.EOF {
		return nil, formatErr("not a Qubes backup: %s is missing (empty archive)", name)
	}
	if err != nil {
		return nil, formatErr("not a Qubes backup: %v", err)
	}
	if m.Name != name {
		if name == "backup-header" && strings.HasPrefix(m.Name, "qubes.xml") {
			return nil, formatErr("Backup format version 2 not supported (no backup-header)")
		}
		return nil, formatErr("unexpected files in archive: got %q, expected %q", m.Name, name)
	}
	if m.Size > limit {
		return nil, formatErr("%s is %d bytes, more than the %d allowed", name, m.Size, limit)
	}
	data := make([]byte, m.Size)
	if _, err := io.ReadFull(a.tr, data); err != nil {
		return nil, a.eofErr(err, name)
	}
	return data, nil
}

// verifyOpensslHMAC checks a v3 header .hmac ("(stdin)= <hex>" from
// `openssl dgst -<algo> -hmac <pass>`) with every digest we know, as the
// reference tries every openssl digest.
func verifyOpensslHMAC(data, mac []byte, pass string) bool {
	_, hexsum, ok := strings.Cut(strings.TrimSpace(string(mac)), "=")
	if !ok {
		return false
	}
	want, err := hex.DecodeString(strings.TrimSpace(hexsum))
	if err != nil {
		return false
	}
	for _, name := range []string{"sha512", "sha256", "sha1", "sha384", "sha224", "md5"} {
		m := hmac.New(hmacHash(name), []byte(pass))
		m.Write(data)
		if hmac.Equal(m.Sum(nil), want) {
			return true
		}
	}
	return false
}

// innerFile extracts one small member from an inner (compressed) tar.
func innerFile(stream []byte, filter, name string, limit int64) ([]byte, error) {
	dr, err := newDecompressor(filter, bytes.NewReader(stream))
	if err != nil {
		return nil, err
	}
	defer dr.Close()
	tr := tar.NewReader(dr)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("inner archive: %w", err)
	}
	if h.Name != name {
		return nil, fmt.Errorf("inner archive holds %q, expected %q", h.Name, name)
	}
	if h.Size > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed", name, h.Size, limit)
	}
	return io.ReadAll(io.LimitReader(tr, limit))
}

// chunkName is a v4 data member: <dir><file>.<NNN>.enc.
var chunkName = regexp.MustCompile(`^((vm[0-9]+/)([A-Za-z0-9][A-Za-z0-9._-]*)|(dom0-home/)([A-Za-z0-9._-]+)|qubes\.xml)\.([0-9]{3,})$`)

// member is a parsed data member name.
type member struct {
	file string // inner file: vm3/private.img
	dir  string // vm3/ or dom0-home/
	idx  int
}

func parseMember(name string, v3 bool) (member, error) {
	base := name
	if !v3 {
		var ok bool
		if base, ok = strings.CutSuffix(name, ".enc"); !ok {
			return member{}, formatErr("Invalid file extension found in archive: %s", name)
		}
	}
	if strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") || strings.Contains(name, "//") {
		return member{}, formatErr("refused member %q: absolute or parent-relative path", name)
	}
	m := chunkName.FindStringSubmatch(base)
	if m == nil || strings.Contains(m[3], "..") || strings.Contains(m[5], "..") {
		return member{}, formatErr("refused member %q: not a backup chunk name (vmN/FILE.NNN%s)", name, map[bool]string{false: ".enc", true: ""}[v3])
	}
	idx, err := strconv.Atoi(m[6])
	if err != nil || idx > 1<<20 {
		return member{}, formatErr("refused member %q: chunk number out of range", name)
	}
	dir := m[2] + m[4]
	return member{file: m[1], dir: dir, idx: idx}, nil
}

// OpenFunc returns where the content of an inner file goes: name is the
// inner member ("vm3/private.img"), size its full (logical) size; for a
// tree (dom0-home/<user>) size is -1 and the writer gets the inner tar
// stream itself (a TreeSink extracts it). A nil writer skips the file. Close is called only when the whole file has
// arrived, authenticated and complete.
type OpenFunc func(name string, size int64) (io.WriteCloser, error)

// Extract reads the data members after the metadata: members of the
// directories want accepts are authenticated chunk by chunk (each fully,
// before any of its bytes is used), checked for order (.000 then +1),
// decompressed and untarred into open's writers. Any refusal stops the
// whole extraction with an error naming the member.
func (a *Archive) Extract(ctx context.Context, want func(dir string) bool, open OpenFunc) error {
	if a.Header.Version == 3 {
		return a.extractV3(ctx, want, open)
	}
	var cur *innerJob
	seen := map[string]bool{}
	finish := func() error {
		if cur == nil {
			return nil
		}
		err := cur.finish()
		cur = nil
		return err
	}
	defer func() {
		if cur != nil {
			cur.abort()
		}
	}()
	pool := newBufPool(2)
	if a.ahead != nil && a.ahead.id == a.Header.BackupID {
		a.ahead.setWant(want)
	} else if ra, ok := a.tr.r.(io.ReaderAt); ok {
		// A file: start the KDFs of the next chunks early (kdfahead.go).
		a.stopAhead()
		a.ahead = startKeyAhead(ctx, ra, a.tr.Offset+a.tr.remain+a.tr.pad, a.Header.BackupID, a.chunkPass, want, a.kdf)
	}
	defer a.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := a.tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return formatErr("%v", err)
		}
		m, err := parseMember(h.Name, false)
		if err != nil {
			return err
		}
		if m.file == "qubes.xml" || !want(m.dir) {
			continue // not restored: not even decrypted
		}
		if h.Size > MaxChunkSize+ScryptOverhead {
			return formatErr("%s is %d bytes, larger than any chunk (%d)", h.Name, h.Size, MaxChunkSize+ScryptOverhead)
		}
		if m.idx == 0 {
			if err := finish(); err != nil {
				return err
			}
			if seen[m.file] {
				return formatErr("%s appears twice in the archive", m.file)
			}
			seen[m.file] = true
			cur = startInner(m.file, a.filter(), open, pool, nil, a.o.MaxExpansion)
		} else if cur == nil || cur.name != m.file || m.idx != cur.next {
			exp := "a .000 chunk"
			if cur != nil {
				exp = fmt.Sprintf("%s.%03d.enc", cur.name, cur.next)
			}
			return formatErr("Unexpected file in archive: %s, expected %s", h.Name, exp)
		}
		buf := pool.get(int(h.Size))
		plain, err := a.readChunk(h, buf, a.chunkPass(h.Name))
		if err != nil {
			pool.put(buf)
			return err
		}
		if err := cur.feed(ctx, buf, plain); err != nil {
			return err
		}
		cur.next++
	}
	return finish()
}

// readChunk reads one member and authenticates it; the KDF runs while
// the rest of the member is still being read, or ran before (keyAhead).
func (a *Archive) readChunk(h *tarHeader, buf []byte, pass string) ([]byte, error) {
	data := buf[:h.Size]
	if h.Size < ScryptOverhead {
		return nil, formatErr("%s: %v", h.Name, ErrNotScrypt)
	}
	off := a.tr.Offset
	if _, err := io.ReadFull(a.tr, data[:scryptHeaderLen]); err != nil {
		return nil, a.eofErr(err, h.Name+" (complete)")
	}
	type res struct {
		k   *Key
		err error
	}
	kc := make(chan res, 1)
	if wait, ok := a.ahead.take(off, h.Name, data); ok {
		go func() {
			k, err := wait()
			kc <- res{k, err}
		}()
	} else {
		go func() {
			k, err := openHeader([]byte(pass), data, a.kdf)
			kc <- res{k, err}
		}()
	}
	_, rerr := io.ReadFull(a.tr, data[scryptHeaderLen:])
	r := <-kc
	if rerr != nil {
		return nil, a.eofErr(rerr, h.Name+" (complete)")
	}
	if r.err != nil {
		return nil, formatErr("failed to decrypt %s: %v", h.Name, r.err)
	}
	plain, err := r.k.open(data)
	if err != nil {
		return nil, formatErr("failed to decrypt %s: %v", h.Name, err)
	}
	return plain, nil
}

// bufPool recycles chunk buffers; its size bounds restore memory.
type bufPool struct{ c chan []byte }

func newBufPool(n int) *bufPool {
	p := &bufPool{c: make(chan []byte, n)}
	for i := 0; i < n; i++ {
		p.c <- nil
	}
	return p
}

func (p *bufPool) get(n int) []byte {
	b := <-p.c
	if cap(b) < n {
		b = make([]byte, n)
	}
	return b[:n]
}

func (p *bufPool) put(b []byte) { p.c <- b }

// innerJob decompresses and untars one inner file in its own goroutine.
type innerJob struct {
	name  string
	next  int
	pw    *io.PipeWriter
	feedc chan [2][]byte
	done  chan error
	pool  *bufPool
	once  sync.Once
}

func startInner(name, filter string, open OpenFunc, pool *bufPool, decrypt func(io.Reader) io.Reader, maxExpansion int64) *innerJob {
	pr, pw := io.Pipe()
	j := &innerJob{name: name, pw: pw, feedc: make(chan [2][]byte, 1), done: make(chan error, 1), pool: pool}
	go func() {
		// Writer side: plaintext of authenticated chunks into the pipe.
		for b := range j.feedc {
			if _, err := pw.Write(b[1]); err != nil {
				pool.put(b[0])
				for b := range j.feedc {
					pool.put(b[0])
				}
				return
			}
			pool.put(b[0])
		}
		pw.Close()
	}()
	go func() {
		var in io.Reader = pr
		if decrypt != nil {
			in = decrypt(pr)
		}
		if maxExpansion == 0 {
			maxExpansion = DefaultMaxExpansion
		}
		if maxExpansion > 0 {
			in = &expansionInput{r: in, name: name, ratio: maxExpansion}
		}
		var err error
		if strings.HasSuffix(name, "/.") {
			err = untarDir(in, filter, strings.TrimSuffix(name, "."), open)
		} else {
			err = untarInner(in, filter, name, open)
		}
		if err != nil {
			pr.CloseWithError(err)
		} else {
			_, _ = io.Copy(io.Discard, pr)
		}
		j.done <- err
	}()
	return j
}

func (j *innerJob) feed(ctx context.Context, buf, plain []byte) error {
	select {
	case j.feedc <- [2][]byte{buf, plain}:
		return nil
	case err := <-j.done:
		j.done <- err
		j.pool.put(buf)
		if err == nil {
			err = fmt.Errorf("data after the end of the inner archive")
		}
		return formatErr("%s: %v", j.name, err)
	case <-ctx.Done():
		j.pool.put(buf)
		return ctx.Err()
	}
}

func (j *innerJob) finish() error {
	j.once.Do(func() { close(j.feedc) })
	if err := <-j.done; err != nil {
		return formatErr("%s: %v", j.name, err)
	}
	return nil
}

func (j *innerJob) abort() {
	j.pw.CloseWithError(errors.New("extraction aborted"))
	j.once.Do(func() { close(j.feedc) })
	<-j.done
}

// tailReader remembers whether the stream ended with the two zero blocks
// of a complete tar archive.
type tailReader struct {
	r    io.Reader
	tail [2 * block]byte
	n    int64
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		b := p[:n]
		if len(b) >= len(t.tail) {
			copy(t.tail[:], b[len(b)-len(t.tail):])
		} else {
			copy(t.tail[:], t.tail[len(b):])
			copy(t.tail[len(t.tail)-len(b):], b)
		}
		t.n += int64(n)
	}
	return n, err
}

func (t *tailReader) complete() bool {
	return t.n >= int64(len(t.tail)) && bytes.Equal(t.tail[:], zeros[:len(t.tail)])
}

// recorder keeps what was read through it until stopped, so a header
// parsed here can be replayed to archive/tar.
type recorder struct {
	r   io.Reader
	buf []byte
	on  bool
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.on {
		r.buf = append(r.buf, p[:n]...)
	}
	return n, err
}

func untarInner(r io.Reader, filter, name string, open OpenFunc) (err error) {
	dr, err := newDecompressor(filter, r)
	if err != nil {
		return err
	}
	defer dr.Close()
	dr = limitExpansion(r, dr)
	tail := &tailReader{r: dr}
	if strings.HasPrefix(name, HomePrefix) {
		return untarTree(tail, name, open)
	}
	rec := &recorder{r: tail, on: true}
	own := &tarReader{r: rec, inner: true}
	h, err := own.Next()
	if err != nil {
		return fmt.Errorf("inner archive: %w", noEOF(err))
	}
	rec.on = false
	var w io.WriteCloser
	if own.pax["GNU.sparse.major"] == "1" && own.pax["GNU.sparse.minor"] == "0" && (h.Typeflag == '0' || h.Typeflag == 0) {
		// PAX GNU.sparse 1.0 (ours and the reference's tarwriter): read
		// the map and write only the data runs, so holes cost nothing.
		if got := own.pax["GNU.sparse.name"]; got != name {
			return fmt.Errorf("inner archive holds %q, expected %q", got, name)
		}
		w, err = readSparse10(own, open, name)
		if err != nil {
			if w != nil {
				w.Close()
			}
			return err
		}
		if _, err := own.Next(); err != io.EOF {
			w.Close()
			if err == nil {
				return fmt.Errorf("inner archive holds more than %q", name)
			}
			return fmt.Errorf("inner archive: %w", noEOF(err))
		}
	} else {
		// Everything else (GNU old sparse, PAX 0.x, plain members) by
		// archive/tar, from the start of the member again.
		tr := tar.NewReader(io.MultiReader(bytes.NewReader(rec.buf), tail))
		h, err := tr.Next()
		if err != nil {
			return fmt.Errorf("inner archive: %w", noEOF(err))
		}
		if h.Name != name {
			return fmt.Errorf("inner archive holds %q, expected %q", h.Name, name)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse, '\x00':
		default:
			return fmt.Errorf("inner member %q is not a regular file", h.Name)
		}
		if w, err = open(name, h.Size); err != nil {
			return err
		}
		if w == nil {
			w = nopWriteCloser{io.Discard}
		}
		if _, err := io.Copy(w, tr); err != nil {
			w.Close()
			return fmt.Errorf("inner archive: %w", noEOF(err))
		}
		if _, err := tr.Next(); err != io.EOF {
			w.Close()
			if err == nil {
				return fmt.Errorf("inner archive holds more than %q", name)
			}
			return fmt.Errorf("inner archive: %w", noEOF(err))
		}
	}
	if _, err := io.Copy(io.Discard, tail); err != nil {
		w.Close()
		return fmt.Errorf("inner archive: %w", noEOF(err))
	}
	if !tail.complete() {
		w.Close()
		return fmt.Errorf("inner archive is truncated (a chunk is missing at its end)")
	}
	return w.Close()
}

// untarTree hands a tree's inner tar (dom0's home) to open's writer as a
// stream, which extracts it (see TreeSink); without a writer the tree is
// read through, so its chunks are still verified.
func untarTree(tail *tailReader, name string, open OpenFunc) error {
	w, err := open(name, -1)
	if err != nil {
		return err
	}
	if w == nil {
		tr := tar.NewReader(tail)
		for {
			if _, err := tr.Next(); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("inner archive: %w", noEOF(err))
			}
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return fmt.Errorf("inner archive: %w", noEOF(err))
			}
		}
		if _, err := io.Copy(io.Discard, tail); err != nil {
			return fmt.Errorf("inner archive: %w", noEOF(err))
		}
		if !tail.complete() {
			return fmt.Errorf("inner archive is truncated (a chunk is missing at its end)")
		}
		return nil
	}
	abort := func(err error) error {
		if s, ok := w.(interface{ Abort(error) }); ok {
			s.Abort(err)
		} else {
			w.Close()
		}
		return err
	}
	if _, err := io.Copy(w, tail); err != nil {
		return abort(fmt.Errorf("inner archive: %w", noEOF(err)))
	}
	if !tail.complete() {
		return abort(fmt.Errorf("inner archive is truncated (a chunk is missing at its end)"))
	}
	return w.Close()
}

// maxSparseEntries bounds a crafted sparse map (ours have one entry per
// data extent).
const maxSparseEntries = 1 << 20

// readSparse10 reads the data of a PAX GNU.sparse 1.0 member: the text
// map, then the runs, written at their offsets.
func readSparse10(t *tarReader, open OpenFunc, name string) (io.WriteCloser, error) {
	realsize, err := strconv.ParseInt(t.pax["GNU.sparse.realsize"], 10, 64)
	if err != nil || realsize < 0 {
		return nil, fmt.Errorf("inner member %q: bad GNU.sparse.realsize", name)
	}
	br := &byteReader{r: t}
	num := func() (int64, error) {
		var v int64
		for n := 0; ; n++ {
			c, err := br.ReadByte()
			if err != nil {
				return 0, fmt.Errorf("inner member %q: sparse map: %w", name, noEOF(err))
			}
			if c == '\n' && n > 0 {
				return v, nil
			}
			if c < '0' || c > '9' || n > 18 {
				return 0, fmt.Errorf("inner member %q: malformed sparse map", name)
			}
			v = v*10 + int64(c-'0')
		}
	}
	count, err := num()
	if err != nil {
		return nil, err
	}
	if count > maxSparseEntries {
		return nil, fmt.Errorf("inner member %q: sparse map of %d entries is too large", name, count)
	}
	m := make([]extent, count)
	var end, dataLen int64
	for i := range m {
		if m[i].off, err = num(); err != nil {
			return nil, err
		}
		if m[i].len, err = num(); err != nil {
			return nil, err
		}
		if m[i].off < end || m[i].len > realsize-m[i].off {
			return nil, fmt.Errorf("inner member %q: sparse map entries overlap or exceed the size", name)
		}
		end = m[i].off + m[i].len
		dataLen += m[i].len
	}
	if _, err := io.CopyN(io.Discard, br, padLen(br.n)); err != nil {
		return nil, fmt.Errorf("inner member %q: %w", name, noEOF(err))
	}
	if t.remain != dataLen {
		return nil, fmt.Errorf("inner member %q: sparse map describes %d bytes, member holds %d", name, dataLen, t.remain)
	}
	w, err := open(name, realsize)
	if err != nil {
		return nil, err
	}
	if w == nil {
		w = nopWriteCloser{io.Discard}
	}
	wa, _ := w.(io.WriterAt)
	if wa != nil {
		return w, copyRuns(t, wa, m)
	}
	buf := make([]byte, 1<<20)
	var pos int64
	for _, e := range m {
		for pos < e.off { // no positional writes: write the hole's zeros
			n := min(int64(len(zeros)), e.off-pos)
			if _, err := w.Write(zeros[:n]); err != nil {
				return w, err
			}
			pos += n
		}
		n, err := io.CopyBuffer(w, io.LimitReader(t, e.len), buf)
		if err == nil && n < e.len {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return w, fmt.Errorf("inner archive: %w", noEOF(err))
		}
		pos = e.off + e.len
	}
	return w, nil
}

// copyRuns reads the data runs of a sparse map from r and writes each at
// its offset, in a second goroutine: the disk write of one piece then
// overlaps the decompression of the next (each takes about half of a
// restore's time). Three 4 MiB page-aligned buffers go round between
// the two, so SparseFile can write them with O_DIRECT.
func copyRuns(r io.Reader, wa io.WriterAt, m []extent) error {
	type piece struct {
		b   []byte
		off int64
	}
	const nbuf, size = 3, 4 << 20
	mem, err := unix.Mmap(-1, 0, nbuf*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	free := make(chan []byte, nbuf)
	for i := range nbuf {
		free <- mem[i*size : (i+1)*size : (i+1)*size] // cap too: put back by b[:cap(b)]
	}
	pieces := make(chan piece, nbuf)
	done := make(chan error, 1)
	var failed atomic.Bool
	go func() {
		var werr error
		for p := range pieces {
			if werr == nil {
				if _, werr = wa.WriteAt(p.b, p.off); werr != nil {
					failed.Store(true)
				}
			}
			free <- p.b[:cap(p.b)]
		}
		done <- werr
	}()
	var rerr error
	for _, e := range m {
		for d := int64(0); d < e.len && rerr == nil && !failed.Load(); {
			b := <-free
			n := min(int64(len(b)), e.len-d)
			if _, err := io.ReadFull(r, b[:n]); err != nil {
				rerr = fmt.Errorf("inner archive: %w", noEOF(err))
				free <- b
				break
			}
			pieces <- piece{b[:n], e.off + d}
			d += n
		}
	}
	close(pieces)
	if werr := <-done; werr != nil {
		return werr
	}
	return rerr
}

// byteReader reads byte by byte through a small buffer, counting.
type byteReader struct {
	r    io.Reader
	n    int64
	buf  []byte
	fill []byte
}

func (b *byteReader) ReadByte() (byte, error) {
	if len(b.fill) == 0 {
		// Read one block at a time: the map is NUL-padded to 512 bytes,
		// so a block never runs past the end of the map area.
		if b.buf == nil {
			b.buf = make([]byte, block)
		}
		need := block - int(b.n%block)
		if _, err := io.ReadFull(b.r, b.buf[:need]); err != nil {
			return 0, err
		}
		b.fill = b.buf[:need]
	}
	c := b.fill[0]
	b.fill = b.fill[1:]
	b.n++
	return c, nil
}

func (b *byteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(b.fill) > 0 {
		n := copy(p, b.fill)
		b.fill = b.fill[n:]
		b.n += int64(n)
		return n, nil
	}
	c, err := b.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}

func noEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("truncated (a chunk is missing at its end)")
	}
	return err
}
