package storage

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

// fakeDM answers losetup and dmsetup as a device-mapper would, recording
// the command lines; this machine has no device-mapper.
type fakeDM struct {
	log  []string
	devs map[string]bool
	n    int
}

func (f *fakeDM) Run(_ context.Context, env []string, name string, args ...string) ([]byte, []byte, error) {
	f.log = append(f.log, strings.Join(append([]string{name}, args...), " "))
	switch name {
	case "losetup":
		f.n++
		return []byte("/dev/loop" + string(rune('0'+f.n)) + "\n"), nil, nil
	case "dmsetup":
		switch args[0] {
		case "create":
			f.devs[args[1]] = true
		case "remove":
			delete(f.devs, args[1])
		}
		return nil, nil, nil
	case "cp":
		return ExecRunner{}.Run(context.Background(), env, name, args...)
	}
	return nil, nil, errors.New("unexpected command " + name)
}

func fileState(t *testing.T) (*testState, *fakeDM) {
	ts := newTestState(t, t.TempDir(), "file")
	f := &fakeDM{devs: map[string]bool{}}
	ts.st.o.Runner = f
	ts.st.hasDM = func() bool { return true }
	ts.st.dmExists = func(n string) bool { return f.devs[n] }
	return ts, f
}

// TestFileLayout: the reference's test_011/013 layout, its dm device
// names and the commit that keeps the old COW as revision "old".
func TestFileLayout(t *testing.T) {
	ctx := context.Background()
	ts, f := fileState(t)
	assertExists(t, ts.path("vm-templates/tpl/root.img"), ts.path("vm-templates/tpl/private.img"),
		ts.path("appvms/work/private.img"), ts.path("appvms/work/volatile.img"))
	assertMissing(t, ts.path("appvms/work/root.img"), ts.path("vm-templates/tpl/root-cow.img"))
	if ts.work.Volume("volatile").RevisionsToKeep != 0 || ts.work.Volume("private").RevisionsToKeep != 1 {
		t.Errorf("revisions_to_keep volatile %d private %d", ts.work.Volume("volatile").RevisionsToKeep, ts.work.Volume("private").RevisionsToKeep)
	}
	fi, _ := os.Stat(ts.path("appvms/work/private.img"))
	if fi.Mode().Perm() != 0o664 {
		t.Errorf("origin image mode %v, want 0664", fi.Mode().Perm())
	}
	must(t, ts.st.Start(ctx, ts.work))
	assertExists(t, ts.path("vm-templates/tpl/root-cow.img"), ts.path("appvms/work/root-cow.img"),
		ts.path("appvms/work/private-cow.img"), ts.path("appvms/work/volatile.img"))
	priv := ts.vol(ts.work, "private")
	bd, _ := priv.BlockDevice()
	if want := "/dev/mapper/origin-" + devIno(ts.path("appvms/work/private.img")); bd.Path != want {
		t.Errorf("private device %s, want %s", bd.Path, want)
	}
	root, _ := ts.vol(ts.work, "root").BlockDevice()
	wantRoot := "/dev/mapper/snapshot-" + devIno(ts.path("vm-templates/tpl/root.img")) + "-" +
		devIno(ts.path("vm-templates/tpl/root-cow.img")) + "-" + devIno(ts.path("appvms/work/root-cow.img"))
	if root.Path != wantRoot {
		t.Errorf("root device %s, want %s", root.Path, wantRoot)
	}
	if vol, _ := ts.vol(ts.work, "volatile").BlockDevice(); vol.Path != ts.path("appvms/work/volatile.img") {
		t.Errorf("volatile device %s", vol.Path)
	}
	var dm []string
	for _, l := range f.log {
		if strings.HasPrefix(l, "dmsetup create") {
			dm = append(dm, l)
		}
	}
	if len(dm) != 4 || !strings.Contains(dm[1], " snapshot /dev/mapper/snapshot-") || !strings.Contains(dm[3], " snapshot-origin /dev/loop") ||
		!strings.HasSuffix(dm[0], " P 256") {
		t.Errorf("dmsetup lines:\n%s", strings.Join(dm, "\n"))
	}
	writeAt(t, ts.path("appvms/work/private-cow.img"), emptyCOWSize+512, "changed")
	if !priv.IsDirty() {
		t.Error("COW with data is not dirty")
	}
	must(t, ts.st.Stop(ctx, ts.work))
	assertExists(t, ts.path("appvms/work/private-cow.img.old"), ts.path("appvms/work/private-cow.img"))
	assertMissing(t, ts.path("appvms/work/root-cow.img"), ts.path("appvms/work/volatile.img"))
	if len(f.devs) != 0 {
		t.Errorf("dm devices left: %v", f.devs)
	}
	revs, _ := priv.Revisions()
	if len(revs) != 1 || revs[0].ID != "old" {
		t.Errorf("revisions %+v", revs)
	}
	if err := priv.Revert(ctx, "old"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("revert: %v", err)
	}
	if err := ts.vol(ts.work, "root").Resize(ctx, 1); err == nil || !strings.Contains(err.Error(), "resizethe template instead") {
		t.Errorf("resize snapshot: %v", err)
	}
	must(t, priv.Resize(ctx, 8*mib))
	if n, _ := fileSize(ts.path("appvms/work/private.img")); n != 8*mib {
		t.Errorf("resize: %d", n)
	}
	if err := ts.st.Create(ctx, ts.work); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("create over existing: %v", err)
	}
	if err := priv.drv.Verify(ctx, priv); err != nil {
		t.Error(err)
	}
	must(t, os.Remove(ts.path("appvms/work/private.img")))
	if err := priv.Verify(ctx); err == nil || err.Error() != "Missing image file: "+ts.path("appvms/work/private.img")+"." {
		t.Errorf("verify: %v", err)
	}
}

// TestFileSnapshotsDisabled: revisions_to_keep -1 uses the image in place
// (reference test_025/026).
func TestFileSnapshotsDisabled(t *testing.T) {
	ts, f := fileState(t)
	ts.work.Volume("private").RevisionsToKeep = -1
	ts.work.Volume("root").SnapOnStart = false // only the private volume is looked at
	v := ts.vol(ts.work, "private")
	must(t, v.Start(context.Background()))
	assertMissing(t, ts.path("appvms/work/private-cow.img"))
	if bd, _ := v.BlockDevice(); bd.Path != ts.path("appvms/work/private.img") {
		t.Errorf("device %s", bd.Path)
	}
	if slices.ContainsFunc(f.log, func(l string) bool { return strings.HasPrefix(l, "dmsetup") }) {
		t.Error("dm used for a snapshots-disabled volume")
	}
}

// TestFileNoDeviceMapper: without device-mapper a start names what is missing.
func TestFileNoDeviceMapper(t *testing.T) {
	ts := newTestState(t, t.TempDir(), "file")
	ts.st.hasDM = func() bool { return false }
	err := ts.st.Start(context.Background(), ts.work)
	if err == nil || !strings.Contains(err.Error(), "needs device-mapper") {
		t.Fatalf("start: %v", err)
	}
	assertMissing(t, ts.path("appvms/work/root-cow.img"), ts.path("vm-templates/tpl/root-cow.img"))
}

// TestKernelVolume: read-only modules image, vmlinuz checked by verify.
func TestKernelVolume(t *testing.T) {
	ts := newTestState(t, t.TempDir(), "file-reflink")
	kdir := ts.path("vm-kernels/6.1.0")
	must(t, os.MkdirAll(kdir, 0o755))
	for _, f := range []string{"vmlinuz", "initramfs"} {
		must(t, os.WriteFile(kdir+"/"+f, []byte("k"), 0o644))
	}
	must(t, ts.app.Set(ts.work, "kernel", "6.1.0"))
	v := ts.vol(ts.work, "kernel")
	if v.Vid() != "6.1.0" || v.Config.RW {
		t.Fatalf("kernel volume vid %q rw %v", v.Vid(), v.Config.RW)
	}
	must(t, os.Remove(kdir+"/vmlinuz"))
	if err := v.Verify(context.Background()); err == nil || err.Error() != "Missing file: "+kdir+"/vmlinuz" {
		t.Errorf("verify: %v", err)
	}
	if _, ok := v.BlockDevice(); ok {
		t.Error("block device without modules.img")
	}
	must(t, os.WriteFile(kdir+"/vmlinuz", []byte("k"), 0o644))
	must(t, os.WriteFile(kdir+"/modules.img", []byte("mods"), 0o644))
	must(t, v.Verify(context.Background()))
	if bd, ok := v.BlockDevice(); !ok || bd.Path != kdir+"/modules.img" || bd.RW {
		t.Errorf("device %+v", bd)
	}
	if err := v.Resize(context.Background(), 10); err == nil {
		t.Error("resize of a read-only volume accepted")
	}
	vers, err := KernelVersions(ts.app.Pool("linux-kernel"))
	if err != nil || !slices.Equal(vers, []string{"6.1.0"}) {
		t.Errorf("versions %v %v", vers, err)
	}
	_ = core.RootImgSize
}
