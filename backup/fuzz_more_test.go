package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// Properties beyond fuzz_test.go's no-panic targets: the header round
// trip and filter whitelist, container sizes, regular outer members, and
// the inner tar (plain and PAX sparse 1.0) reader opening only what it
// expects. `make fuzz` runs each target for FUZZTIME; plain go test runs
// the seeds and testdata/fuzz.

// A header either fails with a HeaderError or parses into a header whose
// own serialisation parses back to the same thing.
func FuzzHeaderRoundTrip(f *testing.F) {
	for _, s := range []string{
		"version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=20161020T123455-1234\n",
		"version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=False\n",
		"version=4\nencrypted=True\ncompressed=True\ncompression-filter=zstd\nhmac-algorithm=scrypt\nbackup-id=x\n",
		"version=2\nencrypted=False\ncompressed=False\nhmac-algorithm=SHA1\n",
		"version=4\nencrypted=True\nencrypted=False\n",
	} {
		f.Add([]byte(s), "")
	}
	f.Add([]byte("version=4\nencrypted=True\ncompressed=True\ncompression-filter=../../bin/sh\nhmac-algorithm=scrypt\nbackup-id=x\n"), "")
	f.Add([]byte("version=4\nencrypted=True\ncompressed=True\nhmac-algorithm=scrypt\nbackup-id=x\n"), "bzip2")
	f.Fuzz(func(t *testing.T, data []byte, forced string) {
		h, err := ParseHeader(data, forced)
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) || he.Msg == "" {
				t.Fatalf("error of another kind: %T %v", err, err)
			}
			return
		}
		if h.Version < 3 || h.Version > 4 || (h.Version == 4 && !h.Encrypted) {
			t.Fatalf("accepted a header the reader cannot use: %+v", h)
		}
		if forced == "" && h.CompressionFilter != "" {
			if err := checkFilter(h.CompressionFilter); err != nil {
				t.Fatalf("filter %q outside the whitelist accepted", h.CompressionFilter)
			}
		}
		again, err := ParseHeader(h.Marshal(), "")
		if err != nil {
			if forced != "" {
				return // a forced filter need not be one the header may name
			}
			t.Fatalf("own header %q refused: %v", h.Marshal(), err)
		}
		if *again != *h {
			t.Fatalf("header changed on a round trip: %+v -> %+v", h, again)
		}
	})
}

// fuzzPass is the passphrase of the seed containers.
var fuzzPass = []byte("fuzz passphrase")

// The scrypt container reader never panics, never asks for more memory
// than allowed, and only opens what was sealed with the passphrase.
func FuzzScryptOpen(f *testing.F) {
	k, err := NewKey(fuzzPass, Params{LogN: 10, R: 8, P: 1})
	if err != nil {
		f.Fatal(err)
	}
	for _, plain := range []string{"", "backup-header content\n", string(bytes.Repeat([]byte{0}, 700))} {
		var b bytes.Buffer
		if err := k.Seal(&b, []byte(plain)); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
		f.Add(b.Bytes()[:b.Len()/2])
	}
	f.Add([]byte("scrypt\x00\x14\x00\x00\x00\x08\x00\x00\x00\x01"))
	const maxMem = 2 << 20 // N=2^10, r=8 costs 1 MiB
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, ok := ContainerParams(data); ok && p.Memory() <= maxMem {
			_ = p.String()
		}
		plain, err := Open(fuzzPass, data, maxMem)
		if err != nil {
			return
		}
		if int64(len(plain))+ScryptOverhead != int64(len(data)) {
			t.Fatalf("opened %d bytes from a %d-byte container", len(plain), len(data))
		}
	})
}

// The outer tar reader accepts only regular files and never reads more
// than the stream holds.
func FuzzOuterTarRegular(f *testing.F) {
	var b bytes.Buffer
	writeFileMember(&b, "backup-header", []byte("version=4\n"), 1)
	f.Add(b.Bytes())
	b.Reset()
	writeHeader(&b, tarHeader{Name: "vm1/private.img.000", Size: 3, Mode: 0o644, Typeflag: '0', PAX: [][2]string{{"path", "vm1/private.img.000"}}})
	writePadded(&b, []byte("abc"))
	writeHeader(&b, tarHeader{Name: "link", Mode: 0o777, Typeflag: '2'})
	writeEnd(&b, 0, true)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := &tarReader{r: bytes.NewReader(data)}
		var total int64
		for i := 0; i < 1000; i++ {
			h, err := tr.Next()
			if err != nil {
				return
			}
			if h.Typeflag != '0' && h.Typeflag != 0 {
				t.Fatalf("outer member %q of type %q returned", h.Name, h.Typeflag)
			}
			n, _ := io.Copy(io.Discard, tr)
			total += n
			if total > int64(len(data)) {
				t.Fatalf("read %d bytes of data from a %d-byte stream", total, len(data))
			}
		}
	})
}

// boundedSink is what a fuzzed restore writes a volume into: positional
// writes within the size it was opened with, nothing kept.
type boundedSink struct {
	size, written int64
}

func (s *boundedSink) Write(p []byte) (int, error) {
	return s.WriteAt(p, s.written)
}

func (s *boundedSink) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("write of %d bytes at %d outside a volume of %d", len(p), off, s.size)
	}
	s.written = max(s.written, off+int64(len(p)))
	return len(p), nil
}

func (s *boundedSink) Close() error { return nil }

// The inner tar reader opens only the member it expects (no other name,
// so nothing outside the restore target), writes within the size it
// announced, and refuses anything else with an error.
func FuzzInnerTar(f *testing.F) {
	const want = "vm1/private.img"
	var b bytes.Buffer
	writeFileMember(&b, want, []byte("plain member data"), 1)
	f.Add(b.Bytes())
	sparse := func(realsize, mapText string, data int) []byte {
		var b bytes.Buffer
		padded := int64(len(mapText)) + padLen(int64(len(mapText)))
		writeHeader(&b, tarHeader{Name: "vm1/GNUSparseFile.1/private.img", Size: padded + int64(data), Mode: 0o644, Typeflag: '0',
			PAX: [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", want}, {"GNU.sparse.realsize", realsize}}})
		writePadded(&b, []byte(mapText))
		writePadded(&b, bytes.Repeat([]byte{1}, data))
		writeEnd(&b, 0, false)
		return b.Bytes()
	}
	f.Add(sparse("4096", "1\n0\n512\n", 512))
	f.Add(sparse("1048576", "2\n0\n512\n4096\n512\n", 1024))
	f.Add(sparse("4096", "2\n0\n1024\n512\n1024\n", 2048))
	b.Reset()
	writeHeader(&b, tarHeader{Name: "../../etc/passwd", Size: 4, Mode: 0o644, Typeflag: '0'})
	writePadded(&b, []byte("root"))
	writeEnd(&b, 0, false)
	f.Add(b.Bytes())
	b.Reset()
	writeHeader(&b, tarHeader{Name: want, Mode: 0o777, Typeflag: '2'})
	writeEnd(&b, 0, false)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		opened := 0
		open := func(name string, size int64) (io.WriteCloser, error) {
			opened++
			if name != want {
				t.Fatalf("opened %q, want only %q", name, want)
			}
			if size < 0 {
				t.Fatalf("opened with size %d", size)
			}
			return &boundedSink{size: size}, nil
		}
		err := untarInner(bytes.NewReader(data), "", want, open)
		if err == nil && opened != 1 {
			t.Fatalf("accepted with %d volumes opened", opened)
		}
	})
}
