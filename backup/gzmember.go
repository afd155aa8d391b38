package backup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
)

// The gzip inner stream as qvm writes it: a series of independent gzip
// members (RFC 1952 §2.2, "a gzip file consists of a series of
// members"), one per gzBlock bytes of input, each carrying in its FEXTRA
// field a subfield 'Q','M' of 4 bytes: the member's total length
// (header to trailer), little-endian. `gzip -d`, `tar -z`, Python's gzip
// and the stock restore read it as one stream; qvm's reader uses the
// lengths to cut the stream into members without decoding it, then
// inflates the members whole and in parallel. A stream whose members lack
// the subfield (any other writer) is read by a streaming decoder.
const (
	gzBlock     = 1 << 20
	gzSI1       = 'Q'
	gzSI2       = 'M'
	gzHeaderLen = 10 + 2 + 4 + 4 // fixed header, XLEN, subfield id+len, member length
	gzTrailer   = 8
	// gzMaxMember bounds a member the reader takes whole: ours are at
	// most gzBlock plus deflate's stored-block overhead; a longer one is
	// read by the streaming decoder. gzMaxOut bounds what one member may
	// inflate to (ours: gzBlock). With at most 3·GOMAXPROCS+2 members
	// held, a crafted stream cannot make the reader hold more than a few
	// tens of MiB.
	gzMaxMember = 2 << 20
	gzMaxOut    = 4 << 20
)

// memberWriter compresses gzBlock pieces in parallel and writes them as
// members, in order.
type memberWriter struct {
	w     io.Writer
	level int
	buf   []byte
	queue chan *gzJob // in order, for the writer side
	work  chan *gzJob
	free  chan []byte // input blocks
	outs  chan []byte // compressed members
	wg    sync.WaitGroup
	done  chan struct{}
	err   error // first write error, set by the output goroutine
	wrote bool
}

type gzJob struct {
	in   []byte
	out  []byte
	err  error
	done chan struct{}
}

func newMemberWriter(w io.Writer, level int) *memberWriter {
	n := runtime.GOMAXPROCS(0)
	z := &memberWriter{w: w, level: level, queue: make(chan *gzJob, 2*n), work: make(chan *gzJob, 2*n),
		free: make(chan []byte, 2*n+2), outs: make(chan []byte, 2*n+2), done: make(chan struct{})}
	for i := 0; i < n; i++ {
		z.wg.Add(1)
		go z.compressor()
	}
	go z.output()
	return z
}

func (z *memberWriter) compressor() {
	defer z.wg.Done()
	var fw *flate.Writer
	for j := range z.work {
		var ob []byte
		select {
		case ob = <-z.outs:
		default:
			ob = make([]byte, 0, gzBlock+gzBlock/16+4096)
		}
		out := bytes.NewBuffer(ob[:0])
		out.Write(make([]byte, gzHeaderLen))
		if fw == nil {
			var err error
			if fw, err = flate.NewWriter(out, z.level); err != nil {
				j.err = err
				close(j.done)
				continue
			}
		} else {
			fw.Reset(out)
		}
		_, err := fw.Write(j.in)
		if err == nil {
			err = fw.Close()
		}
		var tr [gzTrailer]byte
		binary.LittleEndian.PutUint32(tr[:4], crc32.ChecksumIEEE(j.in))
		binary.LittleEndian.PutUint32(tr[4:], uint32(len(j.in)))
		out.Write(tr[:])
		b := out.Bytes()
		putMemberHeader(b, len(b))
		j.out, j.err = b, err
		close(j.done)
	}
}

// putMemberHeader fills the gzHeaderLen bytes of a member of n bytes.
func putMemberHeader(b []byte, n int) {
	copy(b, []byte{0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255}) // deflate, FEXTRA, no mtime, OS unknown
	binary.LittleEndian.PutUint16(b[10:], 8)
	b[12], b[13] = gzSI1, gzSI2
	binary.LittleEndian.PutUint16(b[14:], 4)
	binary.LittleEndian.PutUint32(b[16:], uint32(n))
}

func (z *memberWriter) output() {
	defer close(z.done)
	for j := range z.queue {
		<-j.done
		err := j.err
		if err == nil && z.err == nil {
			_, err = z.w.Write(j.out)
		}
		if err != nil && z.err == nil {
			z.err = err
		}
		select {
		case z.free <- j.in[:0]:
		default:
		}
		select {
		case z.outs <- j.out[:0]:
		default:
		}
	}
}

func (z *memberWriter) submit(block []byte) error {
	select {
	case <-z.done:
		return z.err
	default:
	}
	if z.err != nil {
		return z.err
	}
	j := &gzJob{in: block, done: make(chan struct{})}
	z.queue <- j
	z.work <- j
	z.wrote = true
	return nil
}

func (z *memberWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if z.buf == nil {
			select {
			case z.buf = <-z.free:
			default:
				z.buf = make([]byte, 0, gzBlock)
			}
		}
		take := min(gzBlock-len(z.buf), len(p))
		z.buf = append(z.buf, p[:take]...)
		p, n = p[take:], n+take
		if len(z.buf) == gzBlock {
			if err := z.submit(z.buf); err != nil {
				return n, err
			}
			z.buf = nil
		}
	}
	return n, nil
}

// Close writes the last member (an empty stream still gets one, which
// `gzip -d` needs) and waits for all of them.
func (z *memberWriter) Close() error {
	var err error
	if len(z.buf) > 0 || !z.wrote {
		if z.buf == nil {
			z.buf = []byte{}
		}
		err = z.submit(z.buf)
		z.buf = nil
	}
	close(z.work)
	close(z.queue)
	z.wg.Wait()
	<-z.done
	if z.err != nil {
		return z.err
	}
	return err
}

// memberLen reads the qvm subfield of a member's first bytes: the
// member's length, or 0 when hdr (at least gzHeaderLen bytes) is not
// such a header.
func memberLen(hdr []byte) int {
	if hdr[0] != 0x1f || hdr[1] != 0x8b || hdr[2] != 8 || hdr[3] != 4 ||
		binary.LittleEndian.Uint16(hdr[10:]) != 8 || hdr[12] != gzSI1 || hdr[13] != gzSI2 ||
		binary.LittleEndian.Uint16(hdr[14:]) != 4 {
		return 0
	}
	n := int(binary.LittleEndian.Uint32(hdr[16:]))
	if n < gzHeaderLen+gzTrailer || n > gzMaxMember {
		return 0
	}
	return n
}

// memberReader inflates a stream of qvm members: one goroutine cuts the
// input into members, GOMAXPROCS workers inflate them whole, Read hands
// out their output in order. At most 2·GOMAXPROCS+1 members are held
// (each at most gzMaxMember in and out).
type memberReader struct {
	r     io.Reader
	queue chan *inflJob
	work  chan *inflJob
	stop  chan struct{}
	// recycled member buffers, so that a volume does not leave a
	// megabyte of garbage per member
	inFree, outFree chan []byte
	once            sync.Once
	cur             *inflJob
	off             int
	err             error
}

type inflJob struct {
	in, out []byte
	stream  io.ReadCloser // the rest of the stream, read serially
	err     error
	done    chan struct{}
}

var errMemberTruncated = errors.New("gzip: unexpected end of stream inside a member")

// newMemberReader reads r, whose first gzHeaderLen bytes (already read)
// are hdr, a qvm member header.
func newMemberReader(r io.Reader, hdr []byte) *memberReader {
	n := runtime.GOMAXPROCS(0)
	m := &memberReader{r: r, queue: make(chan *inflJob, 2*n), work: make(chan *inflJob, n), stop: make(chan struct{}),
		inFree: make(chan []byte, 3*n+2), outFree: make(chan []byte, 3*n+2)}
	for i := 0; i < n; i++ {
		go m.inflater()
	}
	go m.split(append([]byte(nil), hdr...))
	return m
}

func (m *memberReader) split(hdr []byte) {
	defer close(m.work)
	defer close(m.queue)
	send := func(j *inflJob) bool {
		select {
		case m.queue <- j:
			return true
		case <-m.stop:
			return false
		}
	}
	for {
		n := memberLen(hdr)
		if n == 0 {
			// Not one of ours: a member from elsewhere, read serially
			// from here on (gzip.Reader reads concatenated members).
			send(streamJob(io.MultiReader(bytes.NewReader(hdr), m.r)))
			return
		}
		in := getBuf(m.inFree, n)
		copy(in, hdr)
		j := &inflJob{in: in, done: make(chan struct{})}
		if _, err := io.ReadFull(m.r, in[len(hdr):]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = errMemberTruncated
			}
			j.err = err
			close(j.done)
			send(j)
			return
		}
		if !send(j) {
			return
		}
		select {
		case m.work <- j:
		case <-m.stop:
			return
		}
		hdr = hdr[:gzHeaderLen]
		k, err := io.ReadFull(m.r, hdr)
		if err == io.EOF {
			return
		}
		if err == io.ErrUnexpectedEOF {
			// A short tail: maybe a foreign member with a shorter header;
			// the streaming decoder says what it is.
			hdr = hdr[:k]
			send(streamJob(bytes.NewReader(hdr)))
			return
		}
		if err != nil {
			j := &inflJob{done: make(chan struct{}), err: err}
			close(j.done)
			send(j)
			return
		}
	}
}

func (m *memberReader) inflater() {
	var d inflater
	defer func() {
		if d != nil {
			d.Close()
		}
	}()
	for {
		var j *inflJob
		select {
		case j = <-m.work:
		case <-m.stop:
			return
		}
		if j == nil {
			return
		}
		if d == nil {
			d = newInflater()
		}
		size := int(binary.LittleEndian.Uint32(j.in[len(j.in)-4:]))
		if size > gzMaxOut {
			j.err = fmt.Errorf("gzip: a member claims %d bytes, more than the %d allowed", size, gzMaxOut)
		} else {
			j.out = getBuf(m.outFree, size)
			j.err = d.Gunzip(j.out, j.in)
		}
		putBuf(m.inFree, j.in)
		j.in = nil
		close(j.done)
	}
}

func (m *memberReader) Read(p []byte) (int, error) {
	for {
		if m.err != nil {
			return 0, m.err
		}
		if m.cur != nil {
			if m.cur.stream != nil {
				n, err := m.cur.stream.Read(p)
				if err != nil && err != io.EOF {
					m.err = err
				}
				if err == io.EOF {
					m.err = io.EOF
				}
				if n > 0 || err != nil {
					return n, err
				}
				continue
			}
			if m.off < len(m.cur.out) {
				n := copy(p, m.cur.out[m.off:])
				m.off += n
				return n, nil
			}
			putBuf(m.outFree, m.cur.out)
			m.cur = nil
		}
		j, ok := <-m.queue
		if !ok {
			m.err = io.EOF
			return 0, io.EOF
		}
		<-j.done
		if j.err != nil {
			m.err = j.err
			return 0, j.err
		}
		m.cur, m.off = j, 0
	}
}

// Close stops the goroutines (the splitter once its read of r returns:
// the caller closes r).
func (m *memberReader) Close() error {
	m.once.Do(func() { close(m.stop) })
	return nil
}

func getBuf(free chan []byte, n int) []byte {
	select {
	case b := <-free:
		if cap(b) >= n {
			return b[:n]
		}
	default:
	}
	return make([]byte, n, max(n, gzBlock+gzBlock/8))
}

func putBuf(free chan []byte, b []byte) {
	select {
	case free <- b:
	default:
	}
}

// streamJob is a finished job that hands the rest of the stream to the
// streaming gzip decoder (members that are not ours).
func streamJob(r io.Reader) *inflJob {
	j := &inflJob{done: make(chan struct{})}
	zr, err := gzip.NewReader(r)
	if err == nil {
		j.stream = zr
	} else {
		j.err = fmt.Errorf("gzip: %w", err)
	}
	close(j.done)
	return j
}
