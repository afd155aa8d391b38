package backup

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// aheadSource is the archive as a stream plus ReadAt, which may see
// other bytes than the stream (a file changed under the restore).
type aheadSource struct {
	r    io.Reader
	f    *os.File
	lies func(p []byte, off int64)
}

func (s *aheadSource) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *aheadSource) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.f.ReadAt(p, off)
	if s.lies != nil {
		s.lies(p[:n], off)
	}
	return n, err
}

// streamOnly hides ReadAt, as a pipe would.
type streamOnly struct{ r io.Reader }

func (s streamOnly) Read(p []byte) (int, error) { return s.r.Read(p) }

type chunkPos struct {
	name      string
	off, size int64
}

// chunkMembers lists the data members of an archive file.
func chunkMembers(t *testing.T, path string) []chunkPos {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := &tarReader{r: f}
	var out []chunkPos
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "vm") {
			out = append(out, chunkPos{h.Name, tr.Offset, h.Size})
		}
	}
}

func aheadBackup(t *testing.T) (archive, vol string) {
	t.Helper()
	dir := t.TempDir()
	vol = filepath.Join(dir, "private.img")
	makeVolume(t, vol, 4<<20, map[int64]int{0: 700 << 10, 2 << 20: 900 << 10})
	archive = filepath.Join(dir, "backup")
	writeTestBackup(t, archive, []Qube{{Name: "work", Files: []File{{Name: "vm1/private.img", Path: vol}}}},
		Options{Compressed: true, ChunkSize: 128 << 10})
	return archive, vol
}

func extractFrom(t *testing.T, src io.Reader) (*restored, error) {
	t.Helper()
	a, err := OpenArchive(context.Background(), src, ReadOptions{Passphrase: "pass word"})
	if err != nil {
		return nil, err
	}
	r := &restored{dir: t.TempDir(), files: map[string]string{}}
	return r, a.Extract(context.Background(), func(string) bool { return true }, r.open)
}

// From a file every chunk's key comes from the look-ahead; from a pipe
// none does; both restore the same data.
func TestKeyAheadUsed(t *testing.T) {
	archive, vol := aheadBackup(t)
	chunks := chunkMembers(t, archive)
	if len(chunks) < 8 {
		t.Fatalf("only %d chunks", len(chunks))
	}
	for _, tc := range []struct {
		name string
		src  func(f *os.File) io.Reader
		hits int64
	}{
		{"file", func(f *os.File) io.Reader { return f }, int64(len(chunks))},
		{"ReadAt wrapper", func(f *os.File) io.Reader { return &aheadSource{r: f, f: f} }, int64(len(chunks))},
		{"pipe", func(f *os.File) io.Reader { return streamOnly{f} }, 0},
	} {
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		before := aheadHits.Load()
		r, err := extractFrom(t, tc.src(f))
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := aheadHits.Load() - before; got != tc.hits {
			t.Errorf("%s: %d keys from the look-ahead, want %d", tc.name, got, tc.hits)
		}
		if fileSum(t, r.files["vm1/private.img"]) != fileSum(t, vol) {
			t.Errorf("%s: restored volume differs", tc.name)
		}
	}
}

// What the look-ahead reads is never trusted: when ReadAt sees other
// scrypt headers or names than the stream, the stream's own bytes decide.
func TestKeyAheadLies(t *testing.T) {
	archive, vol := aheadBackup(t)
	chunks := chunkMembers(t, archive)
	for _, tc := range []struct {
		name string
		lie  func(p []byte, off int64)
	}{
		{"other salt", func(p []byte, off int64) {
			for _, c := range chunks {
				if s := c.off + 20 - off; s >= 0 && s < int64(len(p)) {
					p[s] ^= 1
				}
			}
		}},
		{"garbage headers", func(p []byte, off int64) {
			for i := range p {
				p[i] = byte(i)
			}
		}},
	} {
		f, _ := os.Open(archive)
		before := aheadHits.Load()
		r, err := extractFrom(t, &aheadSource{r: f, f: f, lies: tc.lie})
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := aheadHits.Load() - before; got != 0 {
			t.Errorf("%s: %d keys taken from a look-ahead that saw other bytes", tc.name, got)
		}
		if fileSum(t, r.files["vm1/private.img"]) != fileSum(t, vol) {
			t.Errorf("%s: restored volume differs", tc.name)
		}
	}
}

// With keys derived ahead, a flipped ciphertext byte, a chunk moved into
// another's place and a changed salt are still refused before use.
func TestKeyAheadRefuses(t *testing.T) {
	archive, _ := aheadBackup(t)
	orig, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	chunks := chunkMembers(t, archive)
	c1, c2 := chunks[1], chunks[2]
	if c1.size != c2.size {
		t.Fatal("chunks 1 and 2 differ in size")
	}
	for _, tc := range []struct {
		name, want string
		edit       func(b []byte)
	}{
		{"flipped ciphertext byte", "authentication failed", func(b []byte) { b[c2.off+scryptHeaderLen+1000] ^= 0x20 }},
		{"flipped MAC byte", "authentication failed", func(b []byte) { b[c1.off+c1.size-1] ^= 1 }},
		{"chunks swapped", "passphrase is incorrect", func(b []byte) {
			tmp := append([]byte(nil), b[c1.off:c1.off+c1.size]...)
			copy(b[c1.off:], b[c2.off:c2.off+c2.size])
			copy(b[c2.off:], tmp)
		}},
		{"changed salt", "header checksum", func(b []byte) { b[c2.off+20] ^= 1 }},
	} {
		b := append([]byte(nil), orig...)
		tc.edit(b)
		bad := filepath.Join(t.TempDir(), "bad")
		if err := os.WriteFile(bad, b, 0o600); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(bad)
		r, err := extractFrom(t, f)
		f.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
		if r != nil {
			if data, _ := os.ReadFile(r.files["vm1/private.img"]); len(data) > 0 && !bytes.Equal(data, make([]byte, len(data))) && err == nil {
				t.Errorf("%s: data written", tc.name)
			}
		}
	}
	f, _ := os.Open(archive)
	defer f.Close()
	if _, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: "wrong"}); err == nil {
		t.Error("wrong passphrase accepted")
	}
}
