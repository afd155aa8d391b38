package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// makeVolume writes a sparse image: random data at a few offsets, holes
// elsewhere, and a hole at the end.
func makeVolume(t testing.TB, path string, size int64, pieces map[int64]int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, n := range pieces {
		b := make([]byte, n)
		rand.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

type restored struct {
	dir   string
	files map[string]string
}

func (r *restored) open(name string, size int64) (io.WriteCloser, error) {
	p := filepath.Join(r.dir, filepath.FromSlash(name))
	os.MkdirAll(filepath.Dir(p), 0o755)
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	r.files[name] = p
	return NewSparseFile(f, size), nil
}

func writeTestBackup(t testing.TB, out string, qubes []Qube, o Options) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if o.BackupID == "" {
		o.BackupID = "20260101T000000-42"
	}
	if o.Params == (Params{}) {
		o.Params = testParams
	}
	if o.Passphrase == "" {
		o.Passphrase = "pass word"
	}
	if err := Write(context.Background(), f, []byte("<qubes/>\n"), qubes, o); err != nil {
		t.Fatal(err)
	}
}

func readTestBackup(t testing.TB, path, pass string) (*Archive, *restored, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: pass})
	if err != nil {
		return nil, nil, err
	}
	r := &restored{dir: t.TempDir(), files: map[string]string{}}
	err = a.Extract(context.Background(), func(string) bool { return true }, r.open)
	return a, r, err
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "private.img")
	makeVolume(t, vol, 20<<20, map[int64]int{0: 5000, 3 << 20: 1 << 20, 9<<20 + 100: 70000})
	root := filepath.Join(dir, "root.img")
	makeVolume(t, root, 3<<20, map[int64]int{1 << 20: 2 << 20}) // ends in data
	empty := filepath.Join(dir, "empty.img")
	makeVolume(t, empty, 0, nil)
	qubes := []Qube{
		{Name: "work", Files: []File{{Name: "vm3/private.img", Path: vol}, {Name: "vm3/firewall.xml", Data: []byte("<firewall/>\n")}}},
		{Name: "tpl", Files: []File{{Name: "vm4/root.img", Path: root}, {Name: "vm4/private.img", Path: empty}}},
	}
	for _, tc := range []struct {
		name   string
		o      Options
		chunks bool
	}{
		{"gzip", Options{Compressed: true, Filter: "gzip"}, false},
		{"none", Options{Compressed: false}, false},
		{"bzip2", Options{Compressed: true, Filter: "bzip2"}, false},
		{"xz", Options{Compressed: true, Filter: "xz"}, false},
		{"gzip-multichunk", Options{Compressed: true, ChunkSize: 64 << 10}, true},
		{"none-multichunk", Options{ChunkSize: 300 << 10}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.Filter == "bzip2" || tc.o.Filter == "xz" {
				needTool(t, tc.o.Filter)
			}
			out := filepath.Join(t.TempDir(), "backup")
			writeTestBackup(t, out, qubes, tc.o)
			a, r, err := readTestBackup(t, out, "pass word")
			if err != nil {
				t.Fatal(err)
			}
			if string(a.QubesXML) != "<qubes/>\n" {
				t.Errorf("qubes.xml = %q", a.QubesXML)
			}
			for name, src := range map[string]string{"vm3/private.img": vol, "vm4/root.img": root, "vm4/private.img": empty} {
				if r.files[name] == "" {
					t.Fatalf("%s not restored", name)
				}
				if fileSum(t, r.files[name]) != fileSum(t, src) {
					t.Errorf("%s differs", name)
				}
			}
			fw, _ := os.ReadFile(r.files["vm3/firewall.xml"])
			if !bytes.Equal(fw, []byte("<firewall/>\n")) {
				t.Errorf("firewall.xml = %q", fw)
			}
			// holes stay holes
			var st1, st2 syscallStat
			statBlocks(vol, &st1)
			statBlocks(r.files["vm3/private.img"], &st2)
			if st2.blocks > st1.blocks+64 {
				t.Errorf("restored image uses %d blocks, source %d", st2.blocks, st1.blocks)
			}
		})
	}
}

// An archive cut anywhere is refused (never accepted, never a panic).
func TestTruncatedAnywhere(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "private.img")
	makeVolume(t, vol, 1<<20, map[int64]int{0: 20000, 512 << 10: 20000})
	out := filepath.Join(dir, "backup")
	writeTestBackup(t, out, []Qube{{Name: "w", Files: []File{{Name: "vm1/private.img", Path: vol}, {Name: "vm1/firewall.xml", Data: []byte("<x/>")}}}},
		Options{Compressed: true, ChunkSize: 8192})
	full, _ := os.ReadFile(out)
	// The end: zero blocks and record padding; cutting there loses nothing.
	end := len(full)
	for end > 0 && full[end-1] == 0 {
		end--
	}
	for cut := 0; cut < end; cut += 509 {
		p := filepath.Join(dir, "cut")
		os.WriteFile(p, full[:cut], 0o600)
		if _, _, err := readTestBackup(t, p, "pass word"); err == nil {
			t.Fatalf("archive cut at %d of %d accepted", cut, len(full))
		}
	}
}

type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.n -= len(p)
	if c.n < 0 {
		c.cancel()
	}
	return len(p), nil
}

// A cancelled backup fails; it never ends the stream as if complete.
func TestWriteCancelled(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "private.img")
	makeVolume(t, vol, 8<<20, map[int64]int{0: 6 << 20})
	for _, after := range []int{0, 2000, 100 << 10, 1 << 20} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &cancelAfter{n: after, cancel: cancel}
		err := Write(ctx, w, []byte("<qubes/>"), []Qube{{Name: "q", Files: []File{{Name: "vm1/private.img", Path: vol}}}},
			Options{Passphrase: "p", Params: testParams, ChunkSize: 64 << 10, BackupID: "1-1"})
		cancel()
		if err == nil {
			t.Errorf("cancel after %d bytes: Write succeeded", after)
		}
	}
}
