package storage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	must(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

// ImportFile moves a staged file on the pool's filesystem into place (the
// committed image is the staged inode: no second copy of the data, which is
// what restore relies on for speed) and copies one from elsewhere; either
// way the staged file is consumed and the content is exact.
func TestImportFile(t *testing.T) {
	ctx := context.Background()
	payload := bytes.Repeat([]byte("restored"), 100000)
	for _, driver := range []string{"file", "file-reflink"} {
		t.Run(driver, func(t *testing.T) {
			ts := newTestState(t, t.TempDir(), driver)
			img := ts.path("appvms/work/private.img")

			staged := ts.path("staged.img")
			must(t, os.WriteFile(staged, payload, 0o644))
			ino := inode(t, staged)
			must(t, ts.vol(ts.work, "private").ImportFile(ctx, staged))
			assertMissing(t, staged)
			got, err := os.ReadFile(img)
			must(t, err)
			if !bytes.Equal(got, payload) || ts.work.Volume("private").Size != int64(len(payload)) {
				t.Fatalf("moved import: %d bytes, size %d", len(got), ts.work.Volume("private").Size)
			}
			if inode(t, img) != ino {
				t.Errorf("same filesystem: the staged file was copied, not moved")
			}
			if fi, _ := os.Stat(img); fi.Mode().Perm() != 0o600 {
				t.Errorf("moved image mode %v, want the pool's 0600", fi.Mode().Perm())
			}

			// From another filesystem (/dev/shm is tmpfs): copied.
			other, err := os.MkdirTemp("/dev/shm", "qvm-import-")
			if err != nil {
				t.Skipf("no tmpfs at /dev/shm for a second filesystem: %v", err)
			}
			defer os.RemoveAll(other)
			staged = filepath.Join(other, "staged.img")
			must(t, os.WriteFile(staged, payload[:4096], 0o644))
			must(t, ts.vol(ts.work, "private").ImportFile(ctx, staged))
			assertMissing(t, staged)
			got, err = os.ReadFile(img)
			must(t, err)
			if !bytes.Equal(got, payload[:4096]) {
				t.Fatalf("copied import: %d bytes", len(got))
			}
		})
	}
}
