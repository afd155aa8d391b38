package virthost

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/memd"
	"github.com/qvm-dev/qvm/memd/virtclient"
)

func needEmbedded(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the embedded QEMU driver needs root")
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"); err != nil {
		t.Skip("libvirt's QEMU driver is missing (package libvirt-daemon-driver-qemu)")
	}
	if _, err := exec.Command("getent", "passwd", "libvirt-qemu").Output(); err != nil {
		t.Skip("system user libvirt-qemu is missing (the QEMU driver needs it; make deps creates it)")
	}
}

// With the embedded driver a session holds qvm's lock file beside the root
// and a pass never keeps it: between passes another process gets it.
func TestEmbeddedSessionTakesQvmLock(t *testing.T) {
	needEmbedded(t)
	root := filepath.Join(t.TempDir(), "libvirt")
	h := helperHost(virt.Config{URI: "qemu:///embed?root=" + root, LockTimeout: 2 * time.Second}, 1024*memd.MiB)
	ctx := context.Background()
	other := flock.New(root + ".lock")
	s, err := h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := other.TryLock(); err != nil || ok {
		t.Fatalf("lock file free while a session is open (ok=%v err=%v)", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := other.TryLock(); err != nil || !ok {
		t.Fatalf("lock file still taken after the session (ok=%v err=%v)", ok, err)
	}
	// While qvm holds the lock, a pass waits (here: times out) rather than
	// touching the root.
	d := memd.NewDaemon(h, memd.Options{Params: memd.DefaultParams(), RunDir: t.TempDir()})
	if err := d.Balance(ctx); err == nil {
		t.Fatal("pass ran while another process held the embedded root")
	}
	other.Unlock()
	if err := d.Balance(ctx); err != nil {
		t.Fatalf("pass after the lock was released: %v", err)
	}
	if ok, _ := other.TryLock(); !ok {
		t.Fatal("the pass kept the lock file")
	}
	other.Unlock()
	if err := h.Watch(ctx, func() {}); err != virtclient.ErrNoEvents {
		t.Errorf("Watch on the embedded driver = %v, want ErrNoEvents", err)
	}
	// More passes than libvirt allows embedded connections in one process.
	for i := 0; i < 20; i++ {
		if err := d.Balance(ctx); err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
	}
}

// A qvm command keeps the embedded root until it exits; when it asks for
// memory meanwhile, qmemmand cannot open a session and answers from its
// last pass at once instead of waiting for the root.
func TestRequestFromRootHolder(t *testing.T) {
	needEmbedded(t)
	root := filepath.Join(t.TempDir(), "libvirt")
	cfg := virt.Config{URI: "qemu:///embed?root=" + root, LockTimeout: 5 * time.Second}
	h := helperHost(cfg, 2048*memd.MiB)
	d := memd.NewDaemon(h, memd.Options{Params: memd.DefaultParams(), RunDir: t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Balance(ctx); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "qmemman.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go d.Serve(ctx, l)
	start := time.Now()
	cmd := exec.Command(os.Args[0], sock, strconv.Itoa(1024*memd.MiB), strconv.Itoa(4096*memd.MiB))
	cmd.Env = append(os.Environ(), "MEMD_TEST_HOLDER_URI="+cfg.URI)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := fmt.Sprintf("%d OK\n%d refused: not enough memory: qmemman answered \"FAIL\"\n", 1024*memd.MiB, 4096*memd.MiB)
	if string(out) != want {
		t.Errorf("holder saw %q, want %q", out, want)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("answers took %s: qmemmand waited for the root", el)
	}
}
