package backup

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// SparseFile starts the writeback every writeBehindStep bytes (in its
// kicker goroutine), through WriteAt (sparse members) and Write (other
// members), without changing what the file holds.
func TestSparseFileWriteBehind(t *testing.T) {
	dir := t.TempDir()
	piece := bytes.Repeat([]byte("volume data "), (1<<20)/12+1)[:1<<20]
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
