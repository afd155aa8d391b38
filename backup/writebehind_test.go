package backup

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// SparseFile starts the writeback every writeBehindStep bytes (in its
// kicker goroutine), through WriteAt (sparse members) and Write (other
// members), without changing what the file holds.
func TestSparseFileWriteBehind(t *testing.T) {
	dir := t.TempDir()
	piece := bytes.Repeat([]byte("volume data "), (1<<20)/12+1)[:1<<20]
	// One byte off a page: WriteAt takes the page cache, not O_DIRECT.
	piece = append([]byte{0}, piece...)[1:]
	for _, viaWrite := range []bool{false, true} {
		p := filepath.Join(dir, "vol")
		os.Remove(p)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		const n = 3*writeBehindStep/(1<<20) + 5
		sf := NewSparseFile(f, int64(n+1)<<20)
		before := writeBehinds.Load()
		for i := 0; i < n; i++ {
			if viaWrite {
				_, err = sf.Write(piece)
			} else {
				_, err = sf.WriteAt(piece, int64(i)<<20)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := sf.Close(); err != nil {
			t.Fatal(err)
		}
		// Kicks that find the kicker busy merge into the next one.
		if got := writeBehinds.Load() - before; got < 1 || got > 3 {
			t.Errorf("write=%v: %d writebacks started, want 1 to 3", viaWrite, got)
		}
		data, _ := os.ReadFile(p)
		if len(data) != (n+1)<<20 || !bytes.Equal(data[:1<<20], piece) || !bytes.Equal(data[(n-1)<<20:n<<20], piece) || !bytes.Equal(data[n<<20:], make([]byte, 1<<20)) {
			t.Errorf("write=%v: file holds other data", viaWrite)
		}
	}
}

// Aligned pieces go to the file with O_DIRECT where the file system
// takes it, the unaligned rest through the page cache; either way the
// file holds exactly what was written, and holes stay holes.
func TestSparseFileDirect(t *testing.T) {
	mem, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i%251 + 1)
	}
	p := filepath.Join(t.TempDir(), "vol")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 8 << 20
	sf := NewSparseFile(f, size)
	writes := []struct {
		b   []byte
		off int64
	}{
		{mem[:64<<10], 0},               // all direct
		{mem[:3*4096+100], 1 << 20},     // direct, then a 100-byte tail
		{mem[:5000], 2<<20 + 512},       // unaligned offset
		{mem[1 : 1+8192], 3 << 20},      // unaligned memory
		{mem[:1<<20], size - (1 << 20)}, // the end
	}
	want := make([]byte, size)
	for _, w := range writes {
		if n, err := sf.WriteAt(w.b, w.off); err != nil || n != len(w.b) {
			t.Fatalf("WriteAt %d bytes at %d: %d, %v", len(w.b), w.off, n, err)
		}
		copy(want[w.off:], w.b)
	}
	direct := sf.direct != nil
	if err := sf.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("file holds other data than written")
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 3<<20 {
		t.Errorf("%d bytes allocated for about 1.1 MiB of data: holes filled", st.Blocks*512)
	}
	if !direct {
		t.Logf("O_DIRECT refused by the file system under %s: page cache path only", filepath.Dir(p))
	}
}
