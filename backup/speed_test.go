package backup

import (
	"path/filepath"
	"testing"
	"time"
)

func BenchmarkRestore(b *testing.B) {
	dir := b.TempDir()
	vol := filepath.Join(dir, "private.img")
	pieces := map[int64]int{}
	for off := int64(0); off < 128<<20; off += 2 << 20 {
		pieces[off] = 1 << 20
	}
	makeVolume(b, vol, 128<<20, pieces)
	out := filepath.Join(dir, "backup")
	t0 := time.Now()
	writeTestBackup(b, out, []Qube{{Name: "big", Files: []File{{Name: "vm1/private.img", Path: vol}}}}, Options{Compressed: true})
	b.Logf("write: %v", time.Since(t0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 = time.Now()
		if _, _, err := readTestBackup(b, out, "pass word"); err != nil {
			b.Fatal(err)
		}
		b.Logf("read: %v", time.Since(t0))
	}
}
