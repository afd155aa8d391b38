package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
)

const mib = 1 << 20

// testState is a state with a TemplateVM tpl and an AppVM work on it, the
// varlibqubes pool (driver as asked) in dir, volumes of a few MiB.
type testState struct {
	t    *testing.T
	dir  string
	app  *core.App
	st   *Storage
	tpl  *core.Domain
	work *core.Domain
	now  time.Time
	logs []string
}

func newTestState(t *testing.T, dir, driver string) *testState {
	t.Helper()
	ts := &testState{t: t, dir: dir, now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	ts.app = core.NewInitial(dir, core.Host{MemMiB: 4096, CPUs: 2}, driver == "file-reflink")
	ts.app.Pool("varlibqubes").Driver = driver
	for _, sub := range []string{"appvms", "vm-templates", "vm-kernels"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ts.st = Open(ts.app, Options{RunDir: filepath.Join(dir, "run"), Now: func() time.Time { return ts.now },
		Log: func(m string) { ts.logs = append(ts.logs, m) }})
	ts.tpl = ts.create(core.CreateOpts{Class: "TemplateVM", Name: "tpl", Label: "black"})
	ts.work = ts.create(core.CreateOpts{Class: "AppVM", Name: "work", Label: "red", Template: "tpl"})
	return ts
}

// create adds a qube with small volumes and makes them on disk.
func (ts *testState) create(o core.CreateOpts) *core.Domain {
	ts.t.Helper()
	d, err := ts.app.Create(o)
	if err != nil {
		ts.t.Fatal(err)
	}
	for _, v := range d.Volumes {
		switch v.Name {
		case "root":
			v.Size = 8 * mib
		case "private":
			v.Size = 4 * mib
		case "volatile":
			v.Size = 2 * mib
		}
	}
	if err := ts.st.Create(context.Background(), d); err != nil {
		ts.t.Fatal(err)
	}
	return d
}

func (ts *testState) vol(d *core.Domain, name string) *Volume {
	ts.t.Helper()
	v, err := ts.st.Volume(d, name)
	if err != nil {
		ts.t.Fatal(err)
	}
	return v
}

func (ts *testState) path(rel string) string { return filepath.Join(ts.dir, rel) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte(data), off)
	must(t, err)
}

func hashFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func readAt(t *testing.T, path string, off int64, n int) string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	must(t, err)
	return string(b)
}

func assertExists(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s should exist: %v", p, err)
		}
	}
}

func assertMissing(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s should not exist", p)
		}
	}
}

// listDir lists the files below dir (relative), for layout checks.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// loopFS mounts a fresh filesystem of the given type on a loop device and
// returns its mount point; it skips, naming what is missing, where that
// cannot be done.
func loopFS(t *testing.T, fstype string) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs." + fstype)
	if err != nil {
		t.Skipf("mkfs.%s is missing (install deps/storage.deb)", fstype)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a loop filesystem needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop device support (/dev/loop-control is missing)")
	}
	base := t.TempDir()
	img := filepath.Join(base, fstype+".img")
	size := int64(400 * mib) // xfs wants at least 300 MiB
	f, err := os.Create(img)
	must(t, err)
	must(t, f.Truncate(size))
	f.Close()
	args := []string{"-q", img}
	if fstype == "ext4" {
		args = []string{"-q", "-F", img}
	}
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Skipf("mkfs.%s failed: %v: %s", fstype, err, out)
	}
	mnt := filepath.Join(base, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a loop %s filesystem (loop device or %s driver missing): %v: %s", fstype, fstype, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// sharedExtents reports whether filefrag marks any extent of path shared.
func sharedExtents(t *testing.T, path string) bool {
	t.Helper()
	out, err := exec.Command("filefrag", "-v", path).CombinedOutput()
	if err != nil {
		t.Skipf("filefrag is missing or failed: %v: %s", err, out)
	}
	return strings.Contains(string(out), "shared")
}
