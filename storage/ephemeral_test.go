package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

// fakeCrypt answers cryptsetup as if device-mapper were there: open makes
// the mapping (a file in the fake mapper dir), close removes it.
type fakeCrypt struct {
	dir string
	log []string
}

func (f *fakeCrypt) Run(ctx context.Context, env []string, name string, args ...string) ([]byte, []byte, error) {
	if name != "cryptsetup" {
		return ExecRunner{}.Run(ctx, env, name, args...)
	}
	f.log = append(f.log, strings.Join(append([]string{name}, args...), " "))
	if name == "cryptsetup" {
		switch {
		case len(args) > 3 && args[len(args)-3] == "open":
			return nil, nil, os.WriteFile(filepath.Join(f.dir, args[len(args)-1]), make([]byte, 1<<17), 0o600)
		case args[0] == "close":
			return nil, nil, os.Remove(filepath.Join(f.dir, args[1]))
		}
	}
	return nil, nil, nil
}

// TestEphemeralVolatile: an ephemeral volatile volume is mapped through
// dm-crypt with a throw-away key, its first 64 KiB zeroed, the mapping
// handed to the qube and closed at stop; without device-mapper the start
// says what is missing.
func TestEphemeralVolatile(t *testing.T) {
	ctx := context.Background()
	ts := newTestState(t, t.TempDir(), "file-reflink")
	yes := true
	ts.work.Volume("volatile").Ephemeral = &yes
	mapper := t.TempDir()
	f := &fakeCrypt{dir: mapper}
	ts.st.o.Runner = f
	ts.st.hasDM = func() bool { return true }
	ts.st.dmExists = func(n string) bool { return exists(filepath.Join(mapper, n)) }
	ts.st.mapperDir = mapper
	must(t, ts.st.Start(ctx, ts.work))
	dirty := ts.path("appvms/work/volatile-dirty.img")
	want := "cryptsetup --key-file=/dev/urandom --cipher=aes-xts-plain64 --type=plain -- open " + dirty + " vm-volatile-work-crypt@volatile"
	if len(f.log) != 1 || f.log[0] != want {
		t.Errorf("commands %q, want %q", f.log, want)
	}
	if bd, _ := ts.vol(ts.work, "volatile").BlockDevice(); bd.Path != "/dev/mapper/vm-volatile-work-crypt@volatile" {
		t.Errorf("device %s", bd.Path)
	}
	must(t, ts.st.Stop(ctx, ts.work))
	if f.log[len(f.log)-1] != "cryptsetup close vm-volatile-work-crypt@volatile" {
		t.Errorf("stop: %q", f.log)
	}
	// q escaping: '_' -> '_u', '-' -> '_d'; lvm names after the LV.
	d := ts.create(core.CreateOpts{Class: "AppVM", Name: "my_q-1", Label: "red", Template: "tpl"})
	if n := ts.vol(d, "volatile").cryptName(); n != "vm-volatile-my_uq_d1-crypt@volatile" {
		t.Errorf("crypt name %s", n)
	}
	// A start that fails (no dm for the volatile) takes back the volumes
	// started before it: the private's running copy becomes its precache
	// again, no revision is made.
	ts.st.hasDM = func() bool { return false }
	revs, _ := ts.vol(ts.work, "private").Revisions()
	if err := ts.st.Start(ctx, ts.work); err == nil || !strings.Contains(err.Error(), "needs device-mapper") {
		t.Errorf("start without dm: %v", err)
	}
	assertMissing(t, dirty, ts.path("appvms/work/private-dirty.img"), ts.path("appvms/work/root-dirty.img"))
	assertExists(t, ts.path("appvms/work/private-precache.img"))
	if after, _ := ts.vol(ts.work, "private").Revisions(); len(after) != len(revs) {
		t.Errorf("revisions %v after a failed start, were %v", after, revs)
	}
	ts.st.hasDM = func() bool { return true }
	ts.logs = nil
	must(t, ts.st.Start(ctx, ts.work))
	if len(ts.logs) != 0 {
		t.Errorf("the precache put back was judged stale: %q", ts.logs)
	}
	must(t, ts.st.Stop(ctx, ts.work))
}
