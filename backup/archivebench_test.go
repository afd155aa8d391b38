package backup

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRestoreArchiveFile restores a real archive named by
// QVM_RESTORE_ARCHIVE (passphrase in QVM_RESTORE_PASS), timed: with
// -cpuprofile it shows where a restore spends its time.
func TestRestoreArchiveFile(t *testing.T) {
	path := os.Getenv("QVM_RESTORE_ARCHIVE")
	if path == "" {
		t.Skip("QVM_RESTORE_ARCHIVE not set")
	}
	dir := os.Getenv("QVM_RESTORE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: os.Getenv("QVM_RESTORE_PASS")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("open: %v", time.Since(t0))
	var n int
	err = a.Extract(context.Background(), func(string) bool { return true }, func(name string, size int64) (io.WriteCloser, error) {
		n++
		f, err := os.Create(filepath.Join(dir, filepath.Base(name)))
		if err != nil {
			return nil, err
		}
		return NewSparseFile(f, size), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: %v, %d files", time.Since(t0), n)
}
