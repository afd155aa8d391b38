package backup

import (
	"fmt"
	"io"
)

// expansionInput counts the compressed bytes of one inner archive on
// their way into the decompressor.
type expansionInput struct {
	r     io.Reader
	name  string
	ratio int64
	n     int64
}

func (e *expansionInput) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	return n, err
}

// ExpansionError is an inner archive that decompresses to more than the
// allowed multiple of its compressed size.
type ExpansionError struct {
	Name      string
	Ratio     int64
	In, Out   int64
	Unlimited string // how to lift the limit
}

func (e *ExpansionError) Error() string {
	return fmt.Sprintf("%s decompresses to more than %d times its compressed size (%d bytes from %d); refusing it as a decompression bomb (%s)",
		e.Name, e.Ratio, e.Out, e.In, e.Unlimited)
}

// expansionOutput stops the decompressed stream once it passes the floor
// and the ratio to the compressed bytes read so far.
type expansionOutput struct {
	io.ReadCloser
	in  *expansionInput
	out int64
}

func (o *expansionOutput) Read(p []byte) (int, error) {
	n, err := o.ReadCloser.Read(p)
	o.out += int64(n)
	if o.out > expansionFloor && o.out/o.in.ratio > o.in.n {
		return n, &ExpansionError{Name: o.in.name, Ratio: o.in.ratio, In: o.in.n, Out: o.out, Unlimited: "qvm restore --max-expansion N, or -1 for no limit"}
	}
	return n, err
}

// limitExpansion applies the limit when the compressed stream r is
// counted (restores always are; direct callers in tests are not).
func limitExpansion(r io.Reader, dr io.ReadCloser) io.ReadCloser {
	in, ok := r.(*expansionInput)
	if !ok {
		return dr
	}
	return &expansionOutput{ReadCloser: dr, in: in}
}
