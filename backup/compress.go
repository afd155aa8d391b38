package backup

import (
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"os/exec"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"
)

// newCompressor wraps w in the compression filter: gzip is done in
// process and in parallel (pgzip); other filters are the named program
// run with no arguments, as the reference does.
func newCompressor(filter string, w io.Writer) (io.WriteCloser, error) {
	switch filter {
	case "":
		return nopWriteCloser{w}, nil
	case "gzip", "pigz":
		// Independent members, compressed in parallel, that the reader
		// can inflate in parallel too (gzmember.go).
		return newMemberWriter(w, gzip.DefaultCompression), nil
	}
	var args []string
	if filter == "xz" {
		args = []string{"-T0"} // multi-threaded xz; plain `xz -d` reads it
	}
	return startFilter(w, filter, args...)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// filterProc is a running filter program fed through its stdin.
type filterProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
}

func startFilter(w io.Writer, prog string, args ...string) (*filterProc, error) {
	p := &filterProc{cmd: exec.Command(prog, args...)}
	p.cmd.Stdout = w
	p.cmd.Stderr = &limitedBuffer{b: &p.stderr, n: 1024}
	in, err := p.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p.stdin = in
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("compression filter %s: %w", prog, err)
	}
	return p, nil
}

func (p *filterProc) Write(b []byte) (int, error) { return p.stdin.Write(b) }

func (p *filterProc) Close() error {
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w: %s", p.cmd.Path, err, bytes.TrimSpace(p.stderr.Bytes()))
	}
	return nil
}

type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// newDecompressor reads the inner stream through the filter's -d mode
// (gzip and bzip2 in process; others by the program).
func newDecompressor(filter string, r io.Reader) (io.ReadCloser, error) {
	switch filter {
	case "":
		return io.NopCloser(r), nil
	case "gzip", "pigz":
		// qvm's own members are inflated whole and in parallel; any
		// other gzip stream is read by pgzip (decoding ahead of use).
		hdr := make([]byte, gzHeaderLen)
		n, err := io.ReadFull(r, hdr)
		if err == nil && memberLen(hdr) > 0 {
			return newMemberReader(r, hdr), nil
		}
		z, err := pgzip.NewReader(io.MultiReader(bytes.NewReader(hdr[:n]), r))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return z, nil
	case "bzip2", "pbzip2":
		if _, err := exec.LookPath("bzip2"); err != nil {
			return io.NopCloser(bzip2.NewReader(r)), nil
		}
		filter = "bzip2"
	}
	cmd := exec.Command(filter, "-d")
	cmd.Stdin = r
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, n: 1024}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("decompression filter %s: %w", filter, err)
	}
	return &procReader{cmd: cmd, out: out, stderr: &stderr}, nil
}

type procReader struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *bytes.Buffer
	done   bool
}

func (p *procReader) Read(b []byte) (int, error) {
	if p.done {
		return 0, io.EOF
	}
	n, err := p.out.Read(b)
	if err == io.EOF && !p.done {
		p.done = true
		if werr := p.cmd.Wait(); werr != nil {
			return n, fmt.Errorf("%s -d: %w: %s", p.cmd.Path, werr, bytes.TrimSpace(p.stderr.Bytes()))
		}
	}
	return n, err
}

func (p *procReader) Close() error {
	if !p.done {
		p.done = true
		p.out.Close()
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
	return nil
}
