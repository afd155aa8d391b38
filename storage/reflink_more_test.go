package storage

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReflinkDetails: precache reuse and stale precache, snapshots
// disabled, revision names from the clean image's mtime, and loop devices
// seeing a running resize (reference tests 100-120).
func TestReflinkDetails(t *testing.T) {
	ctx := context.Background()
	dir := loopFS(t, "btrfs")
	ts := newTestState(t, dir, "file-reflink")
	priv := ts.path("appvms/work/private")

	// An in-sync precache becomes the dirty image by rename.
	pc, _ := os.Stat(priv + "-precache.img")
	must(t, ts.vol(ts.work, "private").Start(ctx))
	dirty, _ := os.Stat(priv + "-dirty.img")
	if !os.SameFile(pc, dirty) {
		t.Error("dirty image is not the renamed precache")
	}
	must(t, ts.vol(ts.work, "private").Stop(ctx))

	// A clean image changed behind the precache's back (a downgrade that
	// skipped the precache update): the stale precache is dropped.
	writeAt(t, priv+".img", 0, "newer")
	later := time.Now().Add(time.Hour)
	must(t, os.Chtimes(priv+".img", later, later))
	ts.logs = nil
	must(t, ts.vol(ts.work, "private").Start(ctx))
	if got := readAt(t, priv+"-dirty.img", 0, 5); got != "newer" {
		t.Errorf("started from the stale precache: %q", got)
	}
	if len(ts.logs) != 1 || !strings.HasPrefix(ts.logs[0], "Removed stale file: '"+priv+"-precache.img'") {
		t.Errorf("logs %q", ts.logs)
	}

	// Revision names carry the retired clean image's mtime, in UTC.
	mt := time.Date(2024, 5, 1, 10, 20, 30, 0, time.UTC)
	must(t, os.Chtimes(priv+".img", mt, mt))
	must(t, ts.vol(ts.work, "private").Stop(ctx))
	assertExists(t, priv+".img.2@2024-05-01T10:20:30Z")
	revs, _ := ts.vol(ts.work, "private").Revisions()
	if len(revs) != 1 || revs[0] != (Revision{"2", "2024-05-01T10:20:30"}) {
		t.Errorf("revisions %+v", revs)
	}
	fi, _ := os.Stat(priv + ".img.2@2024-05-01T10:20:30Z")
	if !fi.ModTime().Equal(mt) {
		t.Errorf("revision mtime %v", fi.ModTime())
	}

	// Snapshots disabled: the clean image itself runs; no copies, no revisions.
	ts.work.Volume("private").RevisionsToKeep = -1
	v := ts.vol(ts.work, "private")
	clean, _ := os.Stat(priv + ".img")
	must(t, v.Start(ctx))
	if bd, _ := v.BlockDevice(); bd.Path != priv+"-dirty.img" {
		t.Errorf("device %s", bd.Path)
	}
	d2, _ := os.Stat(priv + "-dirty.img")
	if !os.SameFile(clean, d2) {
		t.Error("snapshots disabled: dirty is a copy, not the clean image")
	}
	assertMissing(t, priv+".img", priv+"-precache.img", priv+".img.2@2024-05-01T10:20:30Z")
	if _, err := v.Export(ctx); err == nil {
		t.Error("export of a running snapshots-disabled volume accepted")
	}
	must(t, v.Stop(ctx))
	assertExists(t, priv+".img")
	assertMissing(t, priv+"-dirty.img", priv+"-precache.img")
	ts.work.Volume("private").RevisionsToKeep = 1

	// A running resize reaches every loop device backed by the image,
	// including one set up through a symlink.
	if _, err := os.Stat("/sys/block/loop0"); err != nil {
		t.Skip("no loop devices in /sys/block")
	}
	v = ts.vol(ts.work, "private")
	must(t, v.Start(ctx))
	link := filepath.Join(dir, "link.img")
	must(t, os.Symlink(priv+"-dirty.img", link))
	var loops []string
	for _, p := range []string{priv + "-dirty.img", link} {
		out, err := exec.Command("losetup", "-f", "--show", p).Output()
		if err != nil {
			t.Skipf("losetup failed (no free loop device): %v", err)
		}
		l := strings.TrimSpace(string(out))
		loops = append(loops, l)
		t.Cleanup(func() { _ = exec.Command("losetup", "-d", l).Run() })
	}
	must(t, v.Resize(ctx, 9*mib))
	for _, l := range loops {
		b, err := os.ReadFile("/sys/block/" + filepath.Base(l) + "/size")
		must(t, err)
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if n*512 != 9*mib {
			t.Errorf("%s sees %d bytes after the resize, want %d", l, n*512, 9*mib)
		}
	}
	if n := allocated(priv + "-dirty.img"); n > 64<<10 {
		t.Errorf("resize allocated %d bytes", n)
	}
}
