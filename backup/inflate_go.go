package backup

import (
	"bytes"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"

	"github.com/qvm-dev/qvm/backup/internal/libdeflate"
)

// inflater inflates one whole gzip member into out, which must be its
// exact size; the CRC and ISIZE are checked.
type inflater interface {
	Gunzip(out, member []byte) error
	Close()
}

// newInflater is libdeflate where the build has it, else Go's.
func newInflater() inflater {
	if d := libdeflate.New(); d != nil {
		return d
	}
	return &goInflater{}
}

// goInflater is the pure Go inflater (builds without cgo); one reader
// reused for every member, its input a bytes.Reader (klauspost's fast
// path for in-memory input).
type goInflater struct {
	br bytes.Reader
	zr *gzip.Reader
}

func (g *goInflater) Gunzip(out, member []byte) error {
	br := &g.br
	br.Reset(member)
	var err error
	if g.zr == nil {
		g.zr, err = gzip.NewReader(br)
	} else {
		err = g.zr.Reset(br)
	}
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	zr := g.zr
	zr.Multistream(false)
	if _, err := io.ReadFull(zr, out); err != nil {
		return fmt.Errorf("gzip: corrupt member: %w", err)
	}
	var one [1]byte
	if n, err := zr.Read(one[:]); n != 0 || err != io.EOF {
		return fmt.Errorf("gzip: member longer than its size field")
	}
	if br.Len() != 0 {
		return fmt.Errorf("gzip: member is shorter than its header says")
	}
	return nil
}

func (*goInflater) Close() {}
