package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
)

// fakeLVM is an in-memory volume group answering the lvm command lines the
// driver runs, and recording them. It stands in for device-mapper, which
// this machine does not have; the command lines are what is checked.
type fakeLVM struct {
	lvs  map[string]*fakeLV // "VG/LV"
	log  []string
	fail string // a command line prefix that fails
}

type fakeLV struct {
	pool, origin, data, attr string
	size                     int64
}

func newFakeLVM() *fakeLVM {
	return &fakeLVM{lvs: map[string]*fakeLV{"qubes_dom0/pool00": {attr: "twi-aotz--", size: 100 << 30}}}
}

func (f *fakeLVM) Run(_ context.Context, env []string, name string, args ...string) ([]byte, []byte, error) {
	line := strings.Join(append(append(slices.Clone(env), name), args...), " ")
	if name != "lvm" || args[0] != "lvs" {
		f.log = append(f.log, line)
	}
	if f.fail != "" && strings.HasPrefix(line, f.fail) {
		return nil, []byte("  injected failure\n"), errors.New("exit status 5")
	}
	if name == "blkdiscard" {
		return nil, nil, nil
	}
	if !slices.Equal(env, []string{"LC_ALL=C.UTF-8"}) || name != "lvm" {
		return nil, []byte("bad env or program"), errors.New("exit status 3")
	}
	opt := func(key string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+key+"="); ok {
				return v
			}
		}
		return ""
	}
	pos := args[slices.Index(args, "--")+1:]
	missing := func(id string) ([]byte, []byte, error) {
		return nil, []byte(fmt.Sprintf("  Failed to find logical volume \"%s\"\n", id)), errors.New("exit status 5")
	}
	vg := "qubes_dom0"
	switch args[0] {
	case "lvs":
		var rows []map[string]string
		for id, lv := range f.lvs {
			vgn, name, _ := strings.Cut(id, "/")
			rows = append(rows, map[string]string{"vg_name": vgn, "pool_lv": lv.pool, "lv_name": name,
				"lv_size": strconv.FormatInt(lv.size, 10) + "B", "data_percent": "50.00", "lv_attr": lv.attr, "origin": lv.origin})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i]["lv_name"] < rows[j]["lv_name"] })
		out, _ := json.Marshal(map[string]any{"report": []map[string]any{{"lv": rows}}})
		return out, nil, nil
	case "lvcreate":
		id := vg + "/" + opt("name")
		if f.lvs[id] != nil {
			return nil, []byte("  Logical Volume \"" + opt("name") + "\" already exists\n"), errors.New("exit status 5")
		}
		if slices.Contains(args, "--snapshot") {
			o := f.lvs[pos[0]]
			if o == nil {
				return missing(pos[0])
			}
			f.lvs[id] = &fakeLV{pool: o.pool, origin: strings.TrimPrefix(pos[0], vg+"/"), data: o.data, size: o.size, attr: "Vwi-a-tz--"}
		} else {
			n, _ := strconv.ParseInt(strings.TrimSuffix(opt("virtualsize"), "B"), 10, 64)
			f.lvs[id] = &fakeLV{pool: "pool00", size: n, attr: "Vwi-a-tz--"}
		}
	case "lvrename":
		lv := f.lvs[pos[0]]
		if lv == nil {
			return missing(pos[0])
		}
		delete(f.lvs, pos[0])
		f.lvs[pos[1]] = lv
		// lvm tracks origins by id: snapshots now name the new name.
		for _, o := range f.lvs {
			if o.origin == strings.TrimPrefix(pos[0], vg+"/") {
				o.origin = strings.TrimPrefix(pos[1], vg+"/")
			}
		}
	case "lvremove":
		if f.lvs[pos[0]] == nil {
			return missing(pos[0])
		}
		delete(f.lvs, pos[0])
	case "lvresize":
		if f.lvs[pos[0]] == nil {
			return missing(pos[0])
		}
		f.lvs[pos[0]].size, _ = strconv.ParseInt(strings.TrimSuffix(opt("size"), "B"), 10, 64)
	case "lvchange":
		if f.lvs[pos[0]] == nil {
			return missing(pos[0])
		}
	default:
		return nil, []byte("unknown lvm command " + args[0]), errors.New("exit status 3")
	}
	return nil, nil, nil
}

func (f *fakeLVM) take() []string {
	out := f.log
	f.log = nil
	return out
}

// lvmState is a state whose qubes live in an lvm_thin pool "lvm".
func lvmState(t *testing.T) (*testState, *fakeLVM) {
	if os.Geteuid() != 0 {
		t.Skip("the lvm command lines checked here are the root ones (no sudo)")
	}
	dir := t.TempDir()
	f := newFakeLVM()
	ts := &testState{t: t, dir: dir, now: time.Unix(1521065904, 0)}
	ts.app = core.NewInitial(dir, core.Host{MemMiB: 4096, CPUs: 2}, false)
	_, err := ts.app.AddPool("lvm", "lvm_thin", []core.Opt{{Key: "volume_group", Value: "qubes_dom0"}, {Key: "thin_pool", Value: "pool00"}})
	must(t, err)
	must(t, ts.app.Set(nil, "default_pool", "lvm"))
	ts.st = Open(ts.app, Options{RunDir: filepath.Join(dir, "run"), Runner: f, Now: func() time.Time { return ts.now }})
	drv, err := ts.st.Driver("lvm")
	must(t, err)
	drv.(*lvmDriver).devExists = func(p string) bool { return f.lvs[strings.TrimPrefix(p, "/dev/")] != nil }
	return ts, f
}

// TestLVMCommandLines pins the exact lvm commands of create, start, stop
// (commit with revision), revert and remove, all with LC_ALL=C.UTF-8.
func TestLVMCommandLines(t *testing.T) {
	ctx := context.Background()
	ts, f := lvmState(t)
	tpl := ts.create(core.CreateOpts{Class: "TemplateVM", Name: "tpl", Label: "black"})
	if got := tpl.Volume("root").Vid; got != "qubes_dom0/vm-tpl-root" {
		t.Fatalf("vid %q", got)
	}
	const L = "LC_ALL=C.UTF-8 lvm "
	want := []string{
		L + "lvcreate --thin --setactivationskip=n --activate=y --name=vm-tpl-root --virtualsize=8388608B -- qubes_dom0/pool00",
		L + "lvcreate --thin --setactivationskip=n --activate=y --name=vm-tpl-private --virtualsize=4194304B -- qubes_dom0/pool00",
	}
	if got := f.take(); !slices.Equal(got, want) {
		t.Fatalf("create:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	must(t, ts.st.Verify(ctx, tpl))
	must(t, ts.st.Start(ctx, tpl))
	want = []string{
		L + "lvcreate --setactivationskip=n --activate=y --snapshot --type=thin --name=vm-tpl-root-snap -- qubes_dom0/vm-tpl-root",
		L + "lvcreate --setactivationskip=n --activate=y --snapshot --type=thin --name=vm-tpl-private-snap -- qubes_dom0/vm-tpl-private",
		L + "lvcreate --thin --setactivationskip=n --activate=y --name=vm-tpl-volatile --virtualsize=2097152B -- qubes_dom0/pool00",
	}
	if got := f.take(); !slices.Equal(got, want) {
		t.Fatalf("start:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	root := ts.vol(tpl, "root")
	if bd, _ := root.BlockDevice(); bd.Path != "/dev/mapper/qubes_dom0-vm--tpl--root--snap" {
		t.Errorf("block device %s", bd.Path)
	}
	if !root.IsDirty() {
		t.Error("running root not dirty")
	}
	f.lvs["qubes_dom0/vm-tpl-root-snap"].data = "v1"
	must(t, ts.st.Stop(ctx, tpl))
	want = []string{
		L + "lvrename -- qubes_dom0/vm-tpl-root qubes_dom0/vm-tpl-root-1521065904-back",
		L + "lvrename -- qubes_dom0/vm-tpl-root-snap qubes_dom0/vm-tpl-root",
		L + "lvrename -- qubes_dom0/vm-tpl-private qubes_dom0/vm-tpl-private-1521065904-back",
		L + "lvrename -- qubes_dom0/vm-tpl-private-snap qubes_dom0/vm-tpl-private",
		"LC_ALL=C.UTF-8 blkdiscard -p 1G /dev/qubes_dom0/vm-tpl-volatile",
		L + "lvremove --force -- qubes_dom0/vm-tpl-volatile",
	}
	if got := f.take(); !slices.Equal(got, want) {
		t.Fatalf("stop:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	revs, _ := root.Revisions()
	if len(revs) != 1 || revs[0] != (Revision{"1521065904-back", "2018-03-14T22:18:24"}) {
		t.Errorf("revisions %+v", revs)
	}
	// A second commit prunes to revisions_to_keep (1), after the rename.
	ts.now = ts.now.Add(time.Second)
	must(t, ts.st.Start(ctx, tpl))
	f.lvs["qubes_dom0/vm-tpl-root-snap"].data = "v2"
	f.take()
	must(t, ts.vol(tpl, "root").Stop(ctx))
	want = []string{
		L + "lvrename -- qubes_dom0/vm-tpl-root qubes_dom0/vm-tpl-root-1521065905-back",
		L + "lvrename -- qubes_dom0/vm-tpl-root-snap qubes_dom0/vm-tpl-root",
		"LC_ALL=C.UTF-8 blkdiscard -p 1G /dev/qubes_dom0/vm-tpl-root-1521065904-back",
		L + "lvremove --force -- qubes_dom0/vm-tpl-root-1521065904-back",
	}
	if got := f.take(); !slices.Equal(got, want) {
		t.Fatalf("second commit:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	must(t, ts.st.Stop(ctx, tpl))
	f.take()
	// Revert: the current LV is replaced by a clone of the revision.
	must(t, root.Revert(ctx, ""))
	want = []string{
		"LC_ALL=C.UTF-8 blkdiscard -p 1G /dev/qubes_dom0/vm-tpl-root",
		L + "lvremove --force -- qubes_dom0/vm-tpl-root",
		L + "lvcreate --setactivationskip=n --activate=y --snapshot --type=thin --name=vm-tpl-root -- qubes_dom0/vm-tpl-root-1521065905-back",
	}
	if got := f.take(); !slices.Equal(got, want) {
		t.Fatalf("revert:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f.lvs["qubes_dom0/vm-tpl-root"].data != "v1" {
		t.Errorf("revert gave %q", f.lvs["qubes_dom0/vm-tpl-root"].data)
	}
	// Resize of a halted origin resizes the committed LV; same size does nothing.
	must(t, root.Resize(ctx, 16*mib))
	must(t, root.Resize(ctx, 16*mib))
	if got := f.take(); !slices.Equal(got, []string{L + "lvresize --size=16777216B -- qubes_dom0/vm-tpl-root"}) {
		t.Errorf("resize: %q", got)
	}
	must(t, ts.st.Remove(ctx, tpl))
	for id := range f.lvs {
		if strings.Contains(id, "vm-tpl") {
			t.Errorf("left behind: %s", id)
		}
	}
}

// TestLVMVectors: the reference test vectors of revision discovery,
// current LV, dirtiness and an AppVM snapshot of its template.
func TestLVMVectors(t *testing.T) {
	ctx := context.Background()
	ts, f := lvmState(t)
	tpl := ts.create(core.CreateOpts{Class: "TemplateVM", Name: "tpl", Label: "black"})
	work := ts.create(core.CreateOpts{Class: "AppVM", Name: "work", Label: "red", Template: "tpl"})
	f.take()
	priv := "qubes_dom0/vm-work-private"
	delete(f.lvs, priv)
	f.lvs[priv+"-1521065904-back"] = &fakeLV{pool: "pool00", size: 4 * mib, data: "a"}
	f.lvs[priv+"-1521065905-back"] = &fakeLV{pool: "pool00", size: 4 * mib, data: "b"}
	f.lvs[priv+"-snap"] = &fakeLV{pool: "pool00", size: 4 * mib, data: "c"}
	f.lvs["qubes_dom0/vm-work-private-x-1521065906-back"] = &fakeLV{pool: "pool00"} // another volume's (issue 4680)
	ts.st = Open(ts.app, Options{RunDir: ts.st.o.RunDir, Runner: f, Now: ts.st.o.Now})
	drv, _ := ts.st.Driver("lvm")
	drv.(*lvmDriver).devExists = func(p string) bool { return f.lvs[strings.TrimPrefix(p, "/dev/")] != nil }
	v := ts.vol(work, "private")
	revs, _ := v.Revisions()
	want := []Revision{{"1521065904-back", "2018-03-14T22:18:24"}, {"1521065905-back", "2018-03-14T22:18:25"}}
	if !slices.Equal(revs, want) {
		t.Errorf("revisions %+v", revs)
	}
	if got := drv.(*lvmDriver).current(priv); got != priv+"-1521065905-back" {
		t.Errorf("current %s", got)
	}
	if !v.IsDirty() {
		t.Error("not dirty with a -snap")
	}
	if err := v.Revert(ctx, ""); err == nil || err.Error() != "Cannot revert dirty volume "+priv+", stop the qube first" {
		t.Errorf("revert dirty: %v", err)
	}
	must(t, v.Stop(ctx))
	if f.lvs[priv] == nil || f.lvs[priv].data != "c" {
		t.Errorf("after stop the -snap is not the volume: %+v", f.lvs[priv])
	}
	// AppVM root snapshots the template's current root; outdated after a template commit.
	must(t, ts.st.Start(ctx, work))
	root := ts.vol(work, "root")
	if s := f.lvs["qubes_dom0/vm-work-root-snap"]; s == nil || s.origin != "vm-tpl-root" {
		t.Fatalf("AppVM root snapshot %+v", s)
	}
	if out, _ := root.IsOutdated(); out {
		t.Error("fresh snapshot outdated")
	}
	must(t, ts.st.Start(ctx, tpl))
	ts.now = ts.now.Add(10 * time.Second)
	must(t, ts.st.Stop(ctx, tpl))
	if out, _ := root.IsOutdated(); !out {
		t.Error("snapshot not outdated after the template committed")
	}
	// A failed start stops what it started; lvm errors surface as the stderr text.
	f.fail = "LC_ALL=C.UTF-8 lvm lvcreate --thin --setactivationskip=n --activate=y --name=vm-work-volatile"
	must(t, ts.st.Stop(ctx, work))
	err := ts.st.Start(ctx, work)
	if err == nil || err.Error() != "injected failure" {
		t.Errorf("failing lvcreate: %v", err)
	}
	if f.lvs[priv+"-snap"] != nil || f.lvs["qubes_dom0/vm-work-root-snap"] != nil || f.lvs["qubes_dom0/vm-work-volatile"] != nil {
		t.Error("a failed start left running LVs behind")
	}
	f.fail = ""
	// Clone in the same thin pool is a thin snapshot of the source's current LV.
	cp := ts.create(core.CreateOpts{Class: "AppVM", Name: "copy", Label: "red", Template: "tpl"})
	f.take()
	must(t, ts.st.Clone(ctx, work, cp))
	got := f.take()
	wantClone := []string{
		"LC_ALL=C.UTF-8 lvm lvrename -- qubes_dom0/vm-copy-private qubes_dom0/vm-copy-private-1521065914-back",
		"LC_ALL=C.UTF-8 lvm lvcreate --setactivationskip=n --activate=y --snapshot --type=thin --name=vm-copy-private -- qubes_dom0/vm-work-private",
	}
	if len(got) < 2 || !slices.Equal(got[:2], wantClone) {
		t.Errorf("clone:\n%s", strings.Join(got, "\n"))
	}
	if f.lvs["qubes_dom0/vm-copy-private"].data != "c" {
		t.Error("clone has other data")
	}
}

// TestLVMSetup: pool add needs an existing thin pool.
func TestLVMSetup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the sudo-less command lines")
	}
	f := newFakeLVM()
	f.lvs["qubes_dom0/plain"] = &fakeLV{attr: "-wi-a-----"}
	for _, c := range []struct{ vg, pool, err string }{
		{"qubes_dom0", "pool00", ""},
		{"qubes_dom0", "nope", "Thin pool qubes_dom0/nope does not exist"},
		{"qubes_dom0", "plain", "Volume qubes_dom0/plain is not a thin pool"},
	} {
		p := &core.PoolConfig{Name: "l", Driver: "lvm_thin", Opts: []core.Opt{{Key: "volume_group", Value: c.vg}, {Key: "thin_pool", Value: c.pool}}}
		err := Setup(context.Background(), p, Options{Runner: f})
		if (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
			t.Errorf("%s/%s: %v, want %q", c.vg, c.pool, err, c.err)
		}
	}
}

// TestLVMRealDevice runs a start/stop/revert cycle against a real thin
// pool on a loop device; it needs device-mapper, which this machine lacks.
func TestLVMRealDevice(t *testing.T) {
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		t.Skip("device-mapper is missing (/dev/mapper/control): real lvm_thin volumes cannot be made here")
	}
	if _, err := exec.LookPath("lvm"); err != nil {
		t.Skip("the lvm command is missing (Debian package lvm2)")
	}
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "pv.img")
	fh, err := os.Create(img)
	must(t, err)
	must(t, fh.Truncate(256*mib))
	fh.Close()
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skipf("no free loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	vg := fmt.Sprintf("qvmtest%d", os.Getpid())
	t.Cleanup(func() {
		_ = exec.Command("lvm", "vgremove", "-f", vg).Run()
		_ = exec.Command("losetup", "-d", loop).Run()
	})
	for _, c := range [][]string{{"pvcreate", "-q", loop}, {"vgcreate", "-q", vg, loop}, {"lvcreate", "-q", "--type", "thin-pool", "-L", "128M", "-n", "pool", vg}} {
		if out, err := exec.Command("lvm", c...).CombinedOutput(); err != nil {
			t.Fatalf("lvm %v: %v: %s", c, err, out)
		}
	}
	dir := t.TempDir()
	ts := &testState{t: t, dir: dir, now: time.Now()}
	ts.app = core.NewInitial(dir, core.Host{MemMiB: 4096, CPUs: 2}, false)
	_, err = ts.app.AddPool("lvm", "lvm_thin", []core.Opt{{Key: "volume_group", Value: vg}, {Key: "thin_pool", Value: "pool"}})
	must(t, err)
	must(t, ts.app.Set(nil, "default_pool", "lvm"))
	ts.st = Open(ts.app, Options{RunDir: filepath.Join(dir, "run")})
	tpl := ts.create(core.CreateOpts{Class: "TemplateVM", Name: "tpl", Label: "black"})
	must(t, ts.st.Start(ctx, tpl))
	bd, _ := ts.vol(tpl, "private").BlockDevice()
	writeAt(t, bd.Path, 0, "real-lvm")
	must(t, ts.st.Stop(ctx, tpl))
	if got := readAt(t, ts.vol(tpl, "private").Path(), 0, 8); got != "real-lvm" {
		t.Errorf("committed LV reads %q", got)
	}
	must(t, ts.vol(tpl, "private").Revert(ctx, ""))
	if got := readAt(t, ts.vol(tpl, "private").Path(), 0, 8); got == "real-lvm" {
		t.Error("revert kept the new data")
	}
	must(t, ts.st.Remove(ctx, tpl))
}
