package backup

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/qvm-dev/qvm/internal/failpoint"
)

// FailpointChunk is the durable step of a backup: one sealed chunk
// appended to the archive (hit after every chunk; see internal/failpoint).
const FailpointChunk = "backup.chunk.write"

// DefaultChunkSize is the reference's plaintext chunk size (100 MiB).
const DefaultChunkSize = 100 << 20

// MaxChunkSize bounds --chunk-size: the reader holds a chunk in memory
// until its HMAC is checked.
const MaxChunkSize = 256 << 20

// File is one file of the backup: an inner tar of its own.
type File struct {
	// Name in the archive: "vm3/private.img", "vm3/firewall.xml".
	Name string
	// Path of a volume image (written as a PAX sparse member, holes
	// skipped), or nil Path and Data for a small file.
	Path string
	Data []byte
	// Src, when set, is the already opened volume (a storage export, held
	// open so a commit meanwhile does not change what is read); Path is
	// then only used in messages.
	Src *os.File
	// Tree is a directory archived as a tree named Name (dom0's home:
	// Name "dom0-home/<user>"); Path, Data and Src are then unused.
	Tree string
}

// Qube is one backed-up qube: its files, in archive order.
type Qube struct {
	Name  string // for progress labels
	Files []File
}

// Options of Write.
type Options struct {
	Passphrase string
	Params     Params
	Compressed bool
	Filter     string // compression program; "gzip" when empty
	ChunkSize  int64  // 0: DefaultChunkSize
	BackupID   string
	// Progress gets the bytes of source data read; Label the qube being
	// written. Both may be nil and are called from one goroutine.
	Progress func(n int64)
	Label    func(name string)
	// Warn gets what tar would warn about in a tree (sockets left out,
	// files changed while read); may be nil.
	Warn func(msg string)
}

// NewBackupID is the reference's id: start time and pid.
func NewBackupID(t time.Time) string {
	return fmt.Sprintf("%s-%d", t.Format("20060102T150405"), os.Getpid())
}

// chunk is a plaintext piece of an inner stream, on its way to sealing.
type chunk struct {
	name string // archive path without .enc
	buf  []byte
	key  *future
	err  error
}

// Write writes a complete format 4 backup to w: header, its .hmac, the
// qubes.xml copy and every qube's files. The pipeline: one goroutine reads
// sources (holes skipped) into the inner tar and the compressor, which
// cuts the stream into chunks; keys for upcoming chunks are derived ahead
// on other cores; the caller's goroutine seals chunks (AES-CTR + HMAC in
// place) and appends them to the outer tar. Memory: two chunk buffers,
// the compressor's blocks and one KDF at a time (keys are derived
// ahead, in the background, one after another).
func Write(ctx context.Context, w io.Writer, qubesXML []byte, qubes []Qube, o Options) error {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize < 4096 || o.ChunkSize > MaxChunkSize {
		return fmt.Errorf("chunk size %d out of range 4096..%d", o.ChunkSize, MaxChunkSize)
	}
	if o.Filter == "" {
		o.Filter = "gzip"
	}
	if o.Params == (Params{}) {
		o.Params = DefaultParams
	}
	if err := checkPassphrase(o.Passphrase); err != nil {
		return err
	}
	if o.BackupID == "" || !headerToken.MatchString(o.BackupID) || o.BackupID[0] == '-' {
		return fmt.Errorf("invalid backup id %q", o.BackupID)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kdf := newKDF(ctx, o.Params, 1)
	defer kdf.sc.close()

	bw := bufio.NewWriterSize(w, 1<<20)
	out := &countWriter{w: bw}
	hdr := (&Header{Version: 4, Encrypted: true, Compressed: o.Compressed, CompressionFilter: o.Filter,
		HMACAlgorithm: "scrypt", BackupID: o.BackupID}).Marshal()
	hk := kdf.get("backup-header!" + o.Passphrase)
	xmlName := "qubes.xml.000"
	kdf.get(o.BackupID + "!" + xmlName + "!" + o.Passphrase)
	if err := appendMember(out, "backup-header", [][]byte{hdr}); err != nil {
		return err
	}
	if err := sealMember(out, "backup-header.hmac", hk, append([]byte(nil), hdr...)); err != nil {
		return err
	}

	files := []File{{Name: "qubes.xml", Data: qubesXML}}
	owner := []string{""}
	for _, q := range qubes {
		for _, f := range q.Files {
			files = append(files, f)
			owner = append(owner, q.Name)
		}
	}
	chunks := make(chan *chunk, 1)
	free := make(chan []byte, 2)
	free <- nil
	free <- nil
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(chunks)
		produce(ctx, files, owner, o, kdf, free, chunks)
	}()
	defer wg.Wait()
	for c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.err != nil {
			cancel()
			return c.err
		}
		if c.name == xmlName+".001" {
			cancel()
			return fmt.Errorf("the qubes.xml copy does not fit in one chunk")
		}
		if c.name == xmlName && SealedSize(int64(len(c.buf))) > 1<<20 {
			cancel()
			return fmt.Errorf("the qubes.xml copy is %d bytes compressed; the restore reads at most 1 MiB", len(c.buf))
		}
		if err := sealMember(out, c.name+".enc", c.key, c.buf); err != nil {
			cancel()
			return fmt.Errorf("write backup: %w", err)
		}
		if err := failpoint.Hit(FailpointChunk); err != nil {
			cancel()
			return fmt.Errorf("write backup: %w", err)
		}
		free <- c.buf[:0]
	}
	// A cancelled producer closes the channel without a word: never end
	// such a stream as if it were complete.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := writeEnd(out, out.n, true); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	return nil
}

// checkPassphrase applies the scrypt tool's limits, so that the emergency
// procedure can type the same passphrase.
func checkPassphrase(p string) error {
	if p == "" {
		return fmt.Errorf("empty passphrase")
	}
	for _, c := range []byte(p) {
		if c == 0 || c == '\n' || c == '\r' {
			return fmt.Errorf("the passphrase must not contain NUL, CR or LF (the scrypt tool cuts it there)")
		}
	}
	if len(p) > 1900 {
		return fmt.Errorf("passphrase longer than 1900 bytes (the scrypt tool reads at most 2048 with the prefixes)")
	}
	return nil
}

// produce runs the inner tars through the compressor into chunks.
func produce(ctx context.Context, files []File, owner []string, o Options, kdf *kdfPool, free chan []byte, chunks chan<- *chunk) {
	readBuf := make([]byte, 1<<20)
	for i, f := range files {
		if o.Label != nil && owner[i] != "" && (i == 0 || owner[i] != owner[i-1]) {
			o.Label(owner[i])
		}
		if i+1 < len(files) {
			kdf.get(o.BackupID + "!" + files[i+1].Name + ".000!" + o.Passphrase)
		}
		cw := &chunker{ctx: ctx, name: f.Name, o: o, kdf: kdf, free: free, out: chunks}
		err := produceFile(ctx, f, o, cw, readBuf)
		if err == nil {
			err = cw.flush(true)
		}
		if err != nil {
			select {
			case chunks <- &chunk{err: fmt.Errorf("%s: %w", f.Name, err)}:
			case <-ctx.Done():
			}
			return
		}
	}
}

func produceFile(ctx context.Context, f File, o Options, cw *chunker, buf []byte) error {
	filter := ""
	if o.Compressed {
		filter = o.Filter
	}
	z, err := newCompressor(filter, cw)
	if err != nil {
		return err
	}
	switch {
	case f.Tree != "":
		err = writeTree(ctx, z, f.Name, f.Tree, o, buf)
	case f.Path == "" && f.Src == nil:
		err = writeFileMember(z, f.Name, f.Data, 0)
	default:
		err = writeVolume(ctx, z, f, o, buf)
	}
	if cerr := z.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeVolume(ctx context.Context, z io.Writer, f File, o Options, buf []byte) error {
	src := f.Src
	if src == nil {
		var err error
		if src, err = os.Open(f.Path); err != nil {
			return err
		}
		defer src.Close()
	}
	st, err := src.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	var ext []extent
	switch {
	case st.Mode().IsRegular():
		if ext, err = dataExtents(src, size); err != nil {
			return err
		}
	case st.Mode()&os.ModeDevice != 0:
		// A block device (lvm_thin export): its size from a seek; no
		// extent map, so zero blocks are read (and compress well).
		if size, err = src.Seek(0, io.SeekEnd); err != nil {
			return err
		}
		ext = []extent{{0, size}}
	default:
		return fmt.Errorf("%s is not a regular file or block device", src.Name())
	}
	progress := o.Progress
	if progress == nil {
		progress = func(int64) {}
	}
	return writeSparseMember(ctx, z, f.Name, src, size, ext, buf, progress)
}

// chunker cuts the compressed stream into chunk buffers.
type chunker struct {
	ctx  context.Context
	name string
	idx  int
	cur  []byte
	key  *future
	o    Options
	kdf  *kdfPool
	free chan []byte
	out  chan<- *chunk
	sent bool
}

func (c *chunker) chunkName(i int) string { return fmt.Sprintf("%s.%03d", c.name, i) }

func (c *chunker) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if c.cur == nil {
			select {
			case b := <-c.free:
				if b == nil {
					b = make([]byte, 0, min(c.o.ChunkSize, 1<<20))
				}
				c.cur = b[:0]
			case <-c.ctx.Done():
				return n, c.ctx.Err()
			}
			c.key = c.kdf.get(c.o.BackupID + "!" + c.chunkName(c.idx) + "!" + c.o.Passphrase)
		}
		room := int(c.o.ChunkSize) - len(c.cur)
		take := min(room, len(p))
		if len(c.cur)+take > cap(c.cur) {
			// Small files stay in a small buffer; a big one grows once,
			// straight to the chunk size, so no garbage piles up.
			nb := make([]byte, len(c.cur), c.o.ChunkSize)
			copy(nb, c.cur)
			c.cur = nb
		}
		c.cur = append(c.cur, p[:take]...)
		p, n = p[take:], n+take
		if len(c.cur) == int(c.o.ChunkSize) {
			if err := c.flush(false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush sends the current chunk; at the end of the file an empty stream
// still yields one (empty) chunk so that every file has a .000.
func (c *chunker) flush(final bool) error {
	if c.cur == nil {
		if !final || c.sent {
			return nil
		}
		select {
		case c.cur = <-c.free:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
		c.key = c.kdf.get(c.o.BackupID + "!" + c.chunkName(c.idx) + "!" + c.o.Passphrase)
	}
	ch := &chunk{name: c.chunkName(c.idx), buf: c.cur, key: c.key}
	c.cur, c.key, c.sent = nil, nil, true
	c.idx++
	if !final {
		// The next chunk will very likely be needed: derive its key now.
		c.kdf.get(c.o.BackupID + "!" + c.chunkName(c.idx) + "!" + c.o.Passphrase)
	}
	select {
	case c.out <- ch:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
}

// appendMember writes a plain outer member.
func appendMember(w io.Writer, name string, parts [][]byte) error {
	var size int64
	for _, p := range parts {
		size += int64(len(p))
	}
	if err := writeHeader(w, tarHeader{Name: name, Size: size, Mode: 0o600, Mtime: time.Now().Unix(), Typeflag: '0'}); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	_, err := w.Write(zeros[:padLen(size)])
	return err
}

// sealMember encrypts plaintext (in place) into an outer member.
func sealMember(w io.Writer, name string, k *future, plaintext []byte) error {
	key, err := k.wait()
	if err != nil {
		return err
	}
	size := SealedSize(int64(len(plaintext)))
	if err := writeHeader(w, tarHeader{Name: name, Size: size, Mode: 0o600, Mtime: time.Now().Unix(), Typeflag: '0'}); err != nil {
		return err
	}
	if err := key.Seal(w, plaintext); err != nil {
		return err
	}
	_, err = w.Write(zeros[:padLen(size)])
	return err
}

// kdfPool derives keys ahead of use, a bounded number at a time (each
// scrypt holds 128·r·N bytes while it runs).
type kdfPool struct {
	ctx    context.Context
	params Params
	sc     *scratch // work areas reused from key to key
	sem    chan struct{}
	mu     sync.Mutex
	m      map[string]*future
}

type future struct {
	done chan struct{}
	key  *Key
	err  error
}

func (f *future) wait() (*Key, error) { <-f.done; return f.key, f.err }

func newKDF(ctx context.Context, p Params, parallel int) *kdfPool {
	return &kdfPool{ctx: ctx, params: p, sc: &scratch{}, sem: make(chan struct{}, parallel), m: map[string]*future{}}
}

// get returns the (maybe still running) derivation for a passphrase.
func (k *kdfPool) get(pass string) *future {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f, ok := k.m[pass]; ok {
		return f
	}
	f := &future{done: make(chan struct{})}
	k.m[pass] = f
	go func() {
		defer close(f.done)
		select {
		case k.sem <- struct{}{}:
		case <-k.ctx.Done():
			f.err = k.ctx.Err()
			return
		}
		defer func() { <-k.sem }()
		f.key, f.err = newKey([]byte(pass), k.params, k.sc)
	}()
	return f
}

// TransferBound is an upper bound of the archive bytes a volume image
// becomes (data runs, the sparse map, tar headers, worst-case gzip
// expansion, one scrypt container per chunk): the qubes.xml copy's
// backup-size must not be below what is transferred, since a restore from
// a qube refuses more than that.
func TransferBound(f *os.File, chunkSize int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return 0, err
		}
	}
	var ext []extent
	if st.Mode().IsRegular() {
		if ext, err = dataExtents(f, size); err != nil {
			return 0, err
		}
	} else {
		ext = []extent{{0, size}}
	}
	var data int64
	for _, e := range ext {
		data += e.len
	}
	return FileBound(data, int64(len(ext)+1)*42, chunkSize), nil
}

// FileBound bounds the archive bytes of a file with data bytes and a
// sparse map of mapLen bytes.
func FileBound(data, mapLen, chunkSize int64) int64 {
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	inner := data + mapLen + 8*block // headers, map padding, end blocks
	z := inner + inner/1000 + 1024   // deflate/bzip2/xz stored-block overhead
	return z + (z/chunkSize+2)*(ScryptOverhead+3*block)
}
