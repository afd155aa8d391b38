package commands

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A running qube is backed up from its last committed image: what the
// guest writes after its start is not in the backup, and the summary says
// so the stock way. A real guest on the embedded QEMU driver.
func TestBackupRunningQube(t *testing.T) {
	r := newRealQubes(t)
	r.create("--standalone", "-l", "red", "--prop", "kernel="+r.kernel, "--prop", "memory=192", "--prop", "netvm=", "work")
	priv := filepath.Join(r.vmDir("", "work"), "private.img")
	committed := make([]byte, 1<<20)
	rand.Read(committed)
	f, err := os.OpenFile(priv, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(committed, 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before, _ := os.ReadFile(priv)
	if _, errs, code := r.qvm("start", "work"); code != 0 {
		t.Fatalf("qvm start work: exit %d: %s", code, errs)
	}
	r.waitConsole("work") // the guest has written its marker into the running image
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("running\n"), 0o600)
	out := filepath.Join(t.TempDir(), "backup")
	summary := r.ok("backup", "-y", "-q", "-p", pw, "--scrypt-params", "10:8:1", out, "work")
	if !strings.Contains(summary, " <-- The VM is running, backup will contain its state from before its start!") {
		t.Errorf("summary without the running note:\n%s", summary)
	}
	r.ok("kill", "work")

	dst := filepath.Join(t.TempDir(), "dst")
	t.Setenv("QVM_CONFIG", "/nonexistent")
	t.Setenv("QVM_RUN_DIR", filepath.Join(t.TempDir(), "run"))
	t.Setenv("QVM_STATE_DIR", dst)
	mustQvm(t, "init", "--reflink", "no")
	mustQvm(t, "restore", "-q", "-p", pw, out)
	got, err := os.ReadFile(filepath.Join(dst, "appvms/work/private.img"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, before) {
		t.Errorf("restored private.img is not the committed image from before the start (guest marker present: %v)",
			bytes.HasPrefix(got, []byte("QVM-TEST-GUEST")))
	}
}
