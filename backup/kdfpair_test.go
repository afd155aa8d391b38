package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/scrypt"
)

// Without the AVX2 kernel scryptKey2 derives the two keys one by one,
// with the same results.
func TestScryptKey2Fallback(t *testing.T) {
	saved := haveBlockMix2
	defer func() { haveBlockMix2 = saved }()
	haveBlockMix2 = false
	pass := [2][]byte{[]byte("a"), []byte("b")}
	salt := [2][]byte{[]byte("s1"), []byte("s2")}
	dk, err := scryptKey2(pass, salt, 10, 8, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for l := range 2 {
		want, _ := scrypt.Key(pass[l], salt[l], 1<<10, 8, 2, 64)
		if !bytes.Equal(dk[l], want) {
			t.Errorf("run %d differs from x/crypto", l)
		}
	}
}

func sealed(t *testing.T, pass string, p Params, msg string) []byte {
	t.Helper()
	k, err := NewKey([]byte(pass), p)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := k.Seal(&b, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// openHeaders2 derives two keys together when it can, and otherwise
// gives each container the answer openHeader would.
func TestOpenHeaders2(t *testing.T) {
	p := Params{LogN: 12, R: 8, P: 1}
	a, b := sealed(t, "pa", p, "first"), sealed(t, "pb", p, "second")
	other := sealed(t, "pb", Params{LogN: 11, R: 8, P: 1}, "other params")
	bad := append([]byte(nil), b...)
	bad[20] ^= 1 // salt changed: header checksum fails
	for _, tc := range []struct {
		name   string
		pass   [2]string
		data   [2][]byte
		max    uint64
		peak   int32
		want   [2]string // plaintext, or the error's text
		wantOK [2]bool
	}{
		{"pair", [2]string{"pa", "pb"}, [2][]byte{a, b}, 1 << 30, 2, [2]string{"first", "second"}, [2]bool{true, true}},
		{"one wrong passphrase", [2]string{"pa", "nope"}, [2][]byte{a, b}, 1 << 30, 2, [2]string{"first", "passphrase is incorrect"}, [2]bool{true, false}},
		{"different parameters", [2]string{"pa", "pb"}, [2][]byte{a, other}, 1 << 30, 1, [2]string{"first", "other params"}, [2]bool{true, true}},
		{"one broken header", [2]string{"pa", "pb"}, [2][]byte{a, bad}, 1 << 30, 1, [2]string{"first", "header checksum mismatch"}, [2]bool{true, false}},
		{"no room for two", [2]string{"pa", "pb"}, [2][]byte{a, b}, p.Memory(), 1, [2]string{"first", "second"}, [2]bool{true, true}},
	} {
		kdfPeak.Store(0)
		lim := newKDFLimit(tc.max)
		r := openHeaders2([2][]byte{[]byte(tc.pass[0]), []byte(tc.pass[1])}, tc.data, lim)
		for l := range 2 {
			if tc.wantOK[l] {
				if r[l].err != nil {
					t.Errorf("%s: container %d: %v", tc.name, l, r[l].err)
					continue
				}
				plain, err := r[l].k.open(append([]byte(nil), tc.data[l]...))
				if err != nil || string(plain) != tc.want[l] {
					t.Errorf("%s: container %d opened to %q, %v", tc.name, l, plain, err)
				}
			} else if r[l].err == nil || !strings.Contains(r[l].err.Error(), tc.want[l]) {
				t.Errorf("%s: container %d: got %v, want %q", tc.name, l, r[l].err, tc.want[l])
			}
		}
		if got := kdfPeak.Load(); got != tc.peak {
			t.Errorf("%s: %d derivations at once, want %d", tc.name, got, tc.peak)
		}
		if lim.peak > tc.max {
			t.Errorf("%s: %d bytes of KDF memory at once, limit %d", tc.name, lim.peak, tc.max)
		}
	}
}

// All derivations of a restore at once stay within MaxKDFMemory: with
// room for one key only, the header's, qubes.xml's and the chunks' keys
// take turns, and the data is still restored.
func TestKDFMemoryShared(t *testing.T) {
	archive, vol := aheadBackup(t)
	for _, tc := range []struct {
		name     string
		max      uint64
		min      uint64 // the header's and qubes.xml's pair at least
		wantPeak uint64
	}{
		{"room for one", testParams.Memory(), testParams.Memory(), testParams.Memory()},
		{"room for four", 4 * testParams.Memory(), 2 * testParams.Memory(), 4 * testParams.Memory()},
	} {
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		a, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: "pass word", MaxKDFMemory: tc.max})
		if err != nil {
			t.Fatal(err)
		}
		r := &restored{dir: t.TempDir(), files: map[string]string{}}
		if err := a.Extract(context.Background(), func(string) bool { return true }, r.open); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if fileSum(t, r.files["vm1/private.img"]) != fileSum(t, vol) {
			t.Errorf("%s: restored volume differs", tc.name)
		}
		a.kdf.mu.Lock()
		peak := a.kdf.peak
		a.kdf.mu.Unlock()
		if peak < tc.min || peak > tc.wantPeak {
			t.Errorf("%s: peak KDF memory %d, want %d..%d", tc.name, peak, tc.min, tc.wantPeak)
		}
	}
}

// From a file, OpenArchive already derives the first chunks' keys (for
// every qube); Extract uses them, or drops them when it restores other
// qubes, and an archive that is never extracted stops its look-ahead.
func TestKeyAheadFromOpen(t *testing.T) {
	dir := t.TempDir()
	vols := map[string]string{}
	var qubes []Qube
	for i, name := range []string{"first", "second"} {
		v := filepath.Join(dir, name+".img")
		makeVolume(t, v, 1<<20, map[int64]int{0: 300 << 10})
		vols[name] = v
		qubes = append(qubes, Qube{Name: name, Files: []File{{Name: "vm" + string(rune('1'+i)) + "/private.img", Path: v}}})
	}
	archive := filepath.Join(dir, "backup")
	writeTestBackup(t, archive, qubes, Options{ChunkSize: 128 << 10})
	for _, tc := range []struct {
		name  string
		want  string // member directory restored
		other string
	}{
		{"the first qube", "vm1/", "vm2/private.img"},
		{"the second qube only", "vm2/", "vm1/private.img"},
	} {
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		a, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: "pass word"})
		if err != nil {
			t.Fatal(err)
		}
		if a.ahead == nil {
			t.Fatalf("%s: no look-ahead started by OpenArchive", tc.name)
		}
		before := aheadHits.Load()
		r := &restored{dir: t.TempDir(), files: map[string]string{}}
		if err := a.Extract(context.Background(), func(d string) bool { return d == tc.want }, r.open); err != nil {
			t.Fatal(err)
		}
		f.Close()
		name := map[string]string{"vm1/": "first", "vm2/": "second"}[tc.want]
		if fileSum(t, r.files[tc.want+"private.img"]) != fileSum(t, vols[name]) {
			t.Errorf("%s: restored volume differs", tc.name)
		}
		if _, ok := r.files[tc.other]; ok {
			t.Errorf("%s: %s restored too", tc.name, tc.other)
		}
		if aheadHits.Load() == before {
			t.Errorf("%s: no key came from the look-ahead", tc.name)
		}
		if a.ahead != nil {
			t.Errorf("%s: look-ahead still running after Extract", tc.name)
		}
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: "pass word"})
	if err != nil {
		t.Fatal(err)
	}
	k := a.ahead
	a.Close()
	select {
	case <-k.stop:
	default:
		t.Error("Close left the look-ahead running")
	}
}

type failingWriterAt struct {
	after int64
	n     int64
}

func (w *failingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if w.n += int64(len(p)); w.n > w.after {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// copyRuns reports the first write error, and a short stream, and stops.
func TestCopyRunsErrors(t *testing.T) {
	m := []extent{{0, 3 << 20}, {5 << 20, 2 << 20}}
	data := bytes.Repeat([]byte{7}, 5<<20)
	w := &failingWriterAt{after: 2 << 20}
	if err := copyRuns(bytes.NewReader(data), w, m); err == nil || err.Error() != "disk full" {
		t.Errorf("write error: got %v", err)
	}
	if err := copyRuns(bytes.NewReader(data[:4<<20]), &failingWriterAt{after: 1 << 40}, m); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("short stream: got %v", err)
	}
	var out bytes.Buffer
	if err := copyRuns(io.TeeReader(bytes.NewReader(data), &out), &failingWriterAt{after: 1 << 40}, m); err != nil || out.Len() != 5<<20 {
		t.Errorf("whole stream: %v, %d bytes read", err, out.Len())
	}
}

// The cache keeps at most maxScratchAreas idle areas, hands an area of
// the right size back, drops idle areas of another size when it must map
// a new one, and unmaps everything once closed.
func TestScratchReuse(t *testing.T) {
	sc := &scratch{}
	var areas [][]byte
	for range maxScratchAreas + 2 {
		b, err := sc.get(1 << 16)
		if err != nil {
			t.Fatal(err)
		}
		areas = append(areas, b)
	}
	for _, b := range areas {
		sc.put(b)
	}
	if n := sc.idle(); n != maxScratchAreas {
		t.Errorf("%d idle areas, want %d", n, maxScratchAreas)
	}
	b, _ := sc.get(1 << 16)
	if &b[0] != &areas[0][0] && &b[0] != &areas[maxScratchAreas-1][0] {
		t.Error("get mapped a new area while one of that size was idle")
	}
	other, _ := sc.get(1 << 17)
	if len(other) != 1<<17 {
		t.Errorf("area of %d bytes, want %d", len(other), 1<<17)
	}
	if n := sc.idle(); n != 0 {
		t.Errorf("%d idle areas of another size kept next to a new one", n)
	}
	sc.close()
	sc.put(b)
	sc.put(other)
	if n := sc.idle(); n != 0 {
		t.Errorf("%d idle areas after close", n)
	}
}

// memWriterAt is a slow disk in memory: pieces queue up behind it.
type memWriterAt []byte

func (m memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	time.Sleep(5 * time.Millisecond)
	return copy(m[off:], p), nil
}

// copyRuns puts every byte at its place, over many rounds of its
// buffers: runs larger and smaller than a buffer, holes between them.
func TestCopyRunsData(t *testing.T) {
	m := []extent{{0, 9<<20 + 4096}, {10 << 20, 100}, {11 << 20, 1 << 20}, {13<<20 + 512, 17 << 20}}
	var in bytes.Buffer
	want := make(memWriterAt, 31<<20)
	n := 0
	for _, e := range m {
		for i := int64(0); i < e.len; i++ {
			c := byte(n*131 + n>>13 + 1)
			in.WriteByte(c)
			want[e.off+i] = c
			n++
		}
	}
	got := make(memWriterAt, len(want))
	if err := copyRuns(&in, got, m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("first difference at byte %d", i)
			}
		}
	}
}
