package virthost

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
	// While qvm holds the lock, a pass is skipped at once rather than
	// waiting for the lock (with qmemmand's own lock held) or touching the
	// root.
	var log syncBuffer
	d := memd.NewDaemon(h, memd.Options{Params: memd.DefaultParams(), RunDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t0 := time.Now()
	if err := d.Balance(ctx); err != nil || time.Since(t0) > time.Second || !strings.Contains(log.String(), "pass skipped") {
		t.Fatalf("pass while another process held the lock: %v after %s; log:\n%s", err, time.Since(t0), log.String())
	}
	if len(d.Domains()) != 0 || virt.DriverHolder(root) != 0 {
		t.Fatal("the skipped pass touched the root")
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
	log := testRequestFrom(t, "")
	if !strings.Contains(log, "answered from the last pass") {
		t.Errorf("no answer from the last pass in the log:\n%s", log)
	}
}

// qvm start lets its driver go before it asks, keeping the lock beside
// the root: qmemmand's sessions for that request use the lock (no wait)
// and the request gets a real pass.
func TestRequestFromLockHolder(t *testing.T) {
	log := testRequestFrom(t, "MEMD_TEST_LOCK_ONLY=1")
	if strings.Contains(log, "last pass") || !strings.Contains(log, "this request's sessions use it") || !strings.Contains(log, "msg=\"balloon request\"") {
		t.Errorf("want real passes under the requester's lock; log:\n%s", log)
	}
}

func testRequestFrom(t *testing.T, env string) string {
	needEmbedded(t)
	root := filepath.Join(t.TempDir(), "libvirt")
	cfg := virt.Config{URI: "qemu:///embed?root=" + root, LockTimeout: 5 * time.Second}
	h := helperHost(cfg, 2048*memd.MiB)
	var log syncBuffer
	d := memd.NewDaemon(h, memd.Options{Params: memd.DefaultParams(), RunDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
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
	cmd.Env = append(os.Environ(), "MEMD_TEST_HOLDER_URI="+cfg.URI, env)
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
	return log.String()
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
