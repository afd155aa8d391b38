package storage

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
)

// reflinkCycle runs create/start/stop/revert/resize/clone/import on a
// file-reflink pool in dir and checks the files by content; shared says
// whether copies must share extents (btrfs, xfs) or be real copies.
func reflinkCycle(t *testing.T, dir string, shared bool) {
	ctx := context.Background()
	ts := newTestState(t, dir, "file-reflink")
	tplRoot := ts.path("vm-templates/tpl/root")
	workPriv := ts.path("appvms/work/private")

	// Create: origin volumes get a sparse clean image and a precache.
	assertExists(t, tplRoot+".img", tplRoot+"-precache.img", ts.path("vm-templates/tpl/private.img"),
		workPriv+".img", workPriv+"-precache.img")
	assertMissing(t, ts.path("appvms/work/root.img"), ts.path("appvms/work/volatile.img"), tplRoot+"-dirty.img")
	if n := allocated(tplRoot + ".img"); n != 0 {
		t.Errorf("new root image allocates %d bytes, want 0 (sparse)", n)
	}
	if got := ts.vol(ts.tpl, "root").Size(); got != 8*mib {
		t.Errorf("root size %d, want %d", got, 8*mib)
	}

	// Template start: the precache becomes the dirty image; stop commits it.
	must(t, ts.st.Verify(ctx, ts.tpl))
	must(t, ts.st.Start(ctx, ts.tpl))
	assertExists(t, tplRoot+"-dirty.img", filepath.Join(dir, "run", "volume-running-varlibqubes:vm--templates-tpl-root"))
	assertMissing(t, tplRoot+"-precache.img")
	bd, ok := ts.vol(ts.tpl, "root").BlockDevice()
	if !ok || bd.Path != tplRoot+"-dirty.img" || !bd.RW || bd.Name != "root" {
		t.Errorf("block device %+v", bd)
	}
	if !ts.vol(ts.tpl, "root").IsDirty() {
		t.Error("running root should be dirty")
	}
	writeAt(t, tplRoot+"-dirty.img", 0, "tpl-v1")
	ts.now = ts.now.Add(time.Minute)
	must(t, ts.st.Stop(ctx, ts.tpl))
	if got := readAt(t, tplRoot+".img", 0, 6); got != "tpl-v1" {
		t.Fatalf("committed root reads %q", got)
	}
	assertExists(t, tplRoot+"-precache.img")
	assertMissing(t, tplRoot+"-dirty.img")
	revs, err := ts.vol(ts.tpl, "root").Revisions()
	must(t, err)
	if len(revs) != 1 || revs[0].ID != "1" {
		t.Fatalf("revisions %+v, want one revision 1", revs)
	}
	assertExists(t, tplRoot+".img.1@"+revs[0].Time+"Z")

	// AppVM start: root is a hardlink to the template's clean image plus a
	// dirty copy; volatile is a fresh sparse image of its nominal size.
	must(t, ts.st.Verify(ctx, ts.work))
	must(t, ts.st.Start(ctx, ts.work))
	a, _ := os.Stat(ts.path("appvms/work/root.img"))
	b, _ := os.Stat(tplRoot + ".img")
	if !os.SameFile(a, b) {
		t.Error("AppVM root.img is not a hardlink of the template root")
	}
	if got := readAt(t, ts.path("appvms/work/root-dirty.img"), 0, 6); got != "tpl-v1" {
		t.Errorf("AppVM root reads %q", got)
	}
	if out, _ := ts.vol(ts.work, "root").IsOutdated(); out {
		t.Error("fresh snapshot reported outdated")
	}
	if n, _ := fileSize(ts.path("appvms/work/volatile-dirty.img")); n != 2*mib {
		t.Errorf("volatile size %d", n)
	}
	writeAt(t, workPriv+"-dirty.img", 4096, "work-1")
	writeAt(t, ts.path("appvms/work/root-dirty.img"), 0, "scratch")
	must(t, resizeFile(ts.path("appvms/work/volatile-dirty.img"), 3*mib))
	ts.now = ts.now.Add(time.Minute)
	must(t, ts.st.Stop(ctx, ts.work))
	assertMissing(t, ts.path("appvms/work/root.img"), ts.path("appvms/work/root-dirty.img"),
		ts.path("appvms/work/volatile-dirty.img"), workPriv+"-dirty.img")
	if got := readAt(t, workPriv+".img", 4096, 6); got != "work-1" {
		t.Fatalf("private reads %q after commit", got)
	}
	if got := readAt(t, tplRoot+".img", 0, 7); got != "tpl-v1\x00" {
		t.Errorf("template root changed by the AppVM: %q", got)
	}
	if v := ts.work.Volume("volatile"); v.Size != 3*mib {
		t.Errorf("volatile nominal size %d, want the image size at stop", v.Size)
	}
	h1 := hashFile(t, workPriv+".img")

	// Second cycle: keep=1 prunes to the newest revision.
	must(t, ts.st.Start(ctx, ts.work))
	if shared != sharedExtents(t, workPriv+"-dirty.img") {
		t.Errorf("dirty image shares extents with the clean one: %v, want %v", !shared, shared)
	}
	writeAt(t, workPriv+"-dirty.img", 4096, "work-2")
	ts.now = ts.now.Add(time.Minute)
	must(t, ts.st.Stop(ctx, ts.work))
	revs, _ = ts.vol(ts.work, "private").Revisions()
	if len(revs) != 1 || revs[0].ID != "2" {
		t.Fatalf("revisions after two commits %+v, want [2]", revs)
	}

	// Revert picks the newest revision and keeps the current state as one more.
	v := ts.vol(ts.work, "private")
	must(t, v.Revert(ctx, ""))
	if got := hashFile(t, workPriv+".img"); got != h1 {
		t.Errorf("revert: hash %s, want %s", got, h1)
	}
	revs, _ = v.Revisions()
	if len(revs) != 1 || revs[0].ID != "3" {
		t.Errorf("revisions after revert %+v, want [3]", revs)
	}
	if err := v.Revert(ctx, "17"); err == nil || !strings.Contains(err.Error(), "has no revision 17") {
		t.Errorf("revert to a missing revision: %v", err)
	}

	// Revert refused while running.
	must(t, ts.st.Start(ctx, ts.work))
	if err := ts.vol(ts.work, "private").Revert(ctx, "3"); err == nil || !strings.Contains(err.Error(), "is not cleanly stopped") {
		t.Errorf("revert while running: %v", err)
	}
	// Resize of the running volume grows the dirty image now.
	must(t, ts.vol(ts.work, "private").Resize(ctx, 5*mib))
	if n, _ := fileSize(workPriv + "-dirty.img"); n != 5*mib {
		t.Errorf("running resize: dirty is %d", n)
	}
	must(t, ts.st.Stop(ctx, ts.work))
	if n, _ := fileSize(workPriv + ".img"); n != 5*mib {
		t.Errorf("after stop: clean is %d", n)
	}

	// Halted resize keeps the content and updates the precache.
	before := readAt(t, workPriv+".img", 4096, 6)
	must(t, ts.vol(ts.work, "private").Resize(ctx, 6*mib))
	if n, _ := fileSize(workPriv + ".img"); n != 6*mib || ts.work.Volume("private").Size != 6*mib {
		t.Errorf("halted resize: file %d, config %d", n, ts.work.Volume("private").Size)
	}
	if got := readAt(t, workPriv+".img", 4096, 6); got != before {
		t.Errorf("resize lost data: %q", got)
	}
	if n, _ := fileSize(workPriv + "-precache.img"); n != 6*mib {
		t.Errorf("precache size %d after resize", n)
	}

	// Clone: a new qube gets the same private content (shared extents on
	// reflink filesystems) and the source's size.
	cp := ts.create(core.CreateOpts{Class: "AppVM", Name: "copy", Label: "red", Template: "tpl"})
	must(t, ts.st.Clone(ctx, ts.work, cp))
	if got, want := hashFile(t, ts.path("appvms/copy/private.img")), hashFile(t, workPriv+".img"); got != want {
		t.Errorf("clone hash %s, want %s", got, want)
	}
	if cp.Volume("private").Size != 6*mib {
		t.Errorf("clone size %d", cp.Volume("private").Size)
	}
	if shared != sharedExtents(t, ts.path("appvms/copy/private.img")) {
		t.Errorf("clone shares extents: %v, want %v", !shared, shared)
	}

	// Export gives the committed data even while the qube runs.
	must(t, ts.st.Start(ctx, cp))
	writeAt(t, ts.path("appvms/copy/private-dirty.img"), 4096, "running")
	exp, err := ts.vol(cp, "private").Export(ctx)
	must(t, err)
	data, err := io.ReadAll(exp.Open())
	must(t, err)
	exp.Close()
	if string(data[4096:4102]) != before || int64(len(data)) != 6*mib {
		t.Errorf("export read %q, %d bytes", data[4096:4102], len(data))
	}
	if err := ts.vol(cp, "private").Import(ctx, strings.NewReader("x"), 1); err == nil {
		t.Error("import into a running volume accepted")
	}
	must(t, ts.st.Stop(ctx, cp))

	// Import: exactly size bytes, the old state kept as a revision.
	payload := bytes.Repeat([]byte("ab"), 300000)
	iv := ts.vol(cp, "private")
	err = iv.Import(ctx, bytes.NewReader(payload[:1000]), int64(len(payload)))
	if err == nil || !strings.Contains(err.Error(), "not enough data (copied 1000 bytes, expected 600000 bytes)") {
		t.Errorf("short import: %v", err)
	}
	err = iv.Import(ctx, bytes.NewReader(append(payload, 'x')), int64(len(payload)))
	if err == nil || !strings.Contains(err.Error(), "too much data (expected 600000 bytes)") {
		t.Errorf("long import: %v", err)
	}
	assertMissing(t, ts.path("appvms/copy/private-import.img"))
	must(t, iv.Import(ctx, bytes.NewReader(payload), int64(len(payload))))
	got, _ := os.ReadFile(ts.path("appvms/copy/private.img"))
	if !bytes.Equal(got, payload) || cp.Volume("private").Size != int64(len(payload)) {
		t.Errorf("import: %d bytes, size %d", len(got), cp.Volume("private").Size)
	}

	// Remove deletes every file and the qube directory.
	must(t, ts.st.Remove(ctx, cp))
	assertMissing(t, ts.path("appvms/copy"))

	// A later template commit makes the AppVM's running snapshot outdated.
	must(t, ts.st.Start(ctx, ts.work))
	must(t, ts.st.Start(ctx, ts.tpl))
	ts.now = ts.now.Add(time.Minute)
	must(t, ts.st.Stop(ctx, ts.tpl))
	if out, known := ts.vol(ts.work, "root").IsOutdated(); !out || !known {
		t.Error("snapshot not outdated after the template committed")
	}
	must(t, ts.st.Stop(ctx, ts.work))

	// Nothing but images, revisions and precaches is left behind.
	for _, f := range listDir(t, dir) {
		if strings.Contains(f, "~") || strings.Contains(f, "-import") || strings.Contains(f, "-dirty") {
			t.Errorf("stray file %s", f)
		}
	}
}

func TestReflinkCycleBtrfs(t *testing.T) { reflinkCycle(t, loopFS(t, "btrfs"), true) }
func TestReflinkCycleXFS(t *testing.T)   { reflinkCycle(t, loopFS(t, "xfs"), true) }

// On ext4 FICLONE fails with EOPNOTSUPP: every copy goes through the
// cp --sparse=always fallback and nothing is shared.
func TestReflinkCycleExt4Fallback(t *testing.T) { reflinkCycle(t, loopFS(t, "ext4"), false) }

// TestReflinkSetupCheck: pool add on a filesystem without reflinks fails
// with the reference's message and removes the directory it made.
func TestReflinkSetupCheck(t *testing.T) {
	mnt := loopFS(t, "ext4")
	dir := filepath.Join(mnt, "pool")
	p := &core.PoolConfig{Name: "p", Driver: "file-reflink", Opts: []core.Opt{{Key: "dir_path", Value: dir}}}
	err := Setup(context.Background(), p, Options{})
	want := "The filesystem for '" + dir + "' does not support reflinks. If you can live with delays on VM startup/shutdown/etc. and wasted disk space, pass the 'setup_check=False' option."
	if err == nil || err.Error() != want {
		t.Fatalf("setup: %v", err)
	}
	assertMissing(t, dir)
	p.Opts = append(p.Opts, core.Opt{Key: "setup_check", Value: "False"})
	must(t, Setup(context.Background(), p, Options{}))
	assertExists(t, dir+"/appvms", dir+"/vm-templates")

	btr := loopFS(t, "btrfs")
	p2 := &core.PoolConfig{Name: "p2", Driver: "file-reflink", Opts: []core.Opt{{Key: "dir_path", Value: btr + "/pool"}}}
	must(t, Setup(context.Background(), p2, Options{}))
	if !ReflinkSupported(btr + "/pool") {
		t.Error("btrfs reported without reflink support")
	}
	if ReflinkSupported(mnt) {
		t.Error("ext4 reported with reflink support")
	}
}

// TestCopyFile pins the copy primitive (the reference's test_000-013):
// new inode, equal / zero-extended / truncated / empty content, mtime
// kept only when asked, reflink only where the filesystem has it.
func TestCopyFile(t *testing.T) {
	for _, fs := range []string{"btrfs", "ext4"} {
		t.Run(fs, func(t *testing.T) {
			dir := loopFS(t, fs)
			src := filepath.Join(dir, "src")
			data := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6}, 37037)
			must(t, os.WriteFile(src, data, 0o644))
			old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
			must(t, os.Chtimes(src, old, old))
			for _, c := range []struct {
				size int64
				want []byte
			}{{-1, data}, {333333, append(slices.Clone(data), make([]byte, 333333-len(data))...)}, {111111, data[:111111]}, {0, nil}} {
				for _, keep := range []bool{false, true} {
					dst := filepath.Join(dir, "dst")
					ref, err := copyFile(context.Background(), ExecRunner{}, src, dst, copyOpts{size: c.size, keepMtime: keep})
					must(t, err)
					got, _ := os.ReadFile(dst)
					if !bytes.Equal(got, c.want) {
						t.Errorf("size %d: content differs (%d bytes)", c.size, len(got))
					}
					if wantRef := fs == "btrfs" && c.size != 0; ref != wantRef {
						t.Errorf("size %d: reflinked=%v, want %v", c.size, ref, wantRef)
					}
					fi, _ := os.Stat(dst)
					if fi.ModTime().Equal(old) != keep {
						t.Errorf("size %d keep %v: mtime %v", c.size, keep, fi.ModTime())
					}
					if fi.Mode().Perm() != 0o600 {
						t.Errorf("mode %v, want 0600", fi.Mode().Perm())
					}
					a, _ := os.Stat(src)
					if os.SameFile(a, fi) {
						t.Error("copy is the same inode")
					}
				}
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "*~*")); len(m) > 0 {
				t.Errorf("temp files left: %v", m)
			}
		})
	}
}
