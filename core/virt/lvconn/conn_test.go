package lvconn

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core/virt"
)

func TestTestDriverLifecycle(t *testing.T) {
	ctx := context.Background()
	// A private test-driver state (test:///default is shared in the process).
	c, err := Open(ctx, virt.Config{URI: "test:///default"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Driver() != "test" || c.Embedded() {
		t.Errorf("Driver/Embedded = %q/%v", c.Driver(), c.Embedded())
	}
	xml := `<domain type="test"><name>work</name><memory unit="MiB">400</memory><os><type arch="x86_64">hvm</type></os></domain>`
	if st, err := c.State("work"); err != nil || st != virt.Halted {
		t.Fatalf("before start: %v %v, want Halted", st, err)
	}
	if err := c.Destroy("work"); !isNotRunning(err) {
		t.Errorf("kill of a halted qube: %v, want NotRunningError", err)
	}
	if _, err := c.CreatePaused(xml); err != nil {
		t.Fatal(err)
	}
	expect := func(want virt.State) {
		t.Helper()
		st, err := c.State("work")
		if err != nil || st != want {
			t.Fatalf("state %v %v, want %v", st, err, want)
		}
		all, err := c.States(ctx)
		if err != nil || all["work"] != want && want != virt.Halted {
			t.Fatalf("States()[work] = %v %v, want %v", all["work"], err, want)
		}
		if want == virt.Halted {
			if _, ok := all["work"]; ok {
				t.Fatalf("States() lists halted work")
			}
		}
	}
	expect(virt.Paused)
	if err := c.Resume("work"); err != nil {
		t.Fatal(err)
	}
	expect(virt.Running)
	if err := c.Suspend("work"); err != nil {
		t.Fatal(err)
	}
	expect(virt.Paused)
	if err := c.Resume("work"); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown("work"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := virt.WaitHalted(wctx, 10*time.Millisecond, func() (virt.State, error) { return c.State("work") }); err != nil {
		t.Fatal(err)
	}
	expect(virt.Halted)
	// Starting again redefines from fresh XML over the inactive definition.
	if _, err := c.CreatePaused(xml); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := c.Destroy("work"); err != nil {
		t.Fatal(err)
	}
	expect(virt.Halted)
	if err := c.Undefine("work"); err != nil {
		t.Fatal(err)
	}
	if err := c.Undefine("work"); err != nil {
		t.Errorf("undefine of an unknown domain: %v", err)
	}
	if err := c.Suspend("work"); !isNotRunning(err) {
		t.Errorf("pause of an unknown domain: %v, want NotRunningError", err)
	}
}

func isNotRunning(err error) bool {
	var nr *virt.NotRunningError
	return errors.As(err, &nr)
}

func TestOpenBadURI(t *testing.T) {
	_, err := Open(context.Background(), virt.Config{URI: "nosuch:///x"})
	if err == nil || !strings.Contains(err.Error(), "nosuch:///x") {
		t.Fatalf("err = %v, want one naming the URI", err)
	}
}

// The embedded QEMU driver opens without a daemon, writes its qemu.conf and
// holds the lock beside the root until Close.
func TestEmbeddedOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the embedded QEMU driver in system mode needs root")
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"); err != nil {
		t.Skip("libvirt-daemon-driver-qemu is not installed (no libvirt_driver_qemu.so)")
	}
	state := t.TempDir()
	c, err := Open(context.Background(), virt.Config{StateDir: state, URI: virt.EmbedURI(state)})
	if err != nil {
		if strings.Contains(err.Error(), "libvirt-qemu") {
			t.Skipf("system user libvirt-qemu missing: %v", err)
		}
		t.Fatal(err)
	}
	if !c.Embedded() {
		t.Errorf("Embedded() = false for %s", c.URI)
	}
	if _, err := virt.LockRoot(context.Background(), filepath.Join(state, "libvirt"), 20*time.Millisecond); err == nil {
		t.Errorf("root not locked while connected")
	}
	st, err := c.States(context.Background())
	if err != nil || len(st) != 0 {
		t.Errorf("States = %v %v, want empty", st, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fl, err := virt.LockRoot(context.Background(), filepath.Join(state, "libvirt"), 20*time.Millisecond)
	if err != nil {
		t.Fatalf("root still locked after Close: %v", err)
	}
	fl.Unlock()
}

// TestMain lets the test binary be qvm-virt.
func TestMain(m *testing.M) {
	if os.Getenv(virt.EnvHelperChild) == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// Through the helper, as qvm talks to libvirt: a domain on the test
// driver, libvirt's errors with their code and message, NotRunningError.
func TestThroughHelper(t *testing.T) {
	ctx := context.Background()
	t.Setenv("LIBVIRT_LOG_OUTPUTS", "") // TestEmbeddedOpen's, for its root only
	c, err := virt.Open(ctx, virt.Config{URI: "test:///default", Helper: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, err := c.States(ctx); err != nil || st["test"] != virt.Running {
		t.Fatalf("States = %v %v, want the test driver's own domain", st, err)
	}
	xml := `<domain type="test"><name>work</name><memory unit="MiB">400</memory><os><type arch="x86_64">hvm</type></os></domain>`
	if _, err := c.CreatePaused(ctx, xml); err != nil {
		t.Fatal(err)
	}
	if st, err := c.State(ctx, "work"); err != nil || st != virt.Paused {
		t.Fatalf("State = %v %v, want Paused", st, err)
	}
	if err := c.Resume(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreatePaused(ctx, "<domain")
	var le *virt.Error
	if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), "define domain: virError(Code=") || virt.Message(err) == err.Error() {
		t.Fatalf("bad XML: %v (%T), want libvirt's error", err, err)
	}
	if err := c.AttachDevice(ctx, "work", "<nonsense/>"); err == nil || strings.Contains(err.Error(), "virError") {
		t.Fatalf("attach: %v, want libvirt's message alone", err)
	}
	if err := c.Destroy(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(ctx, "work"); !isNotRunning(err) {
		t.Fatalf("second kill: %v, want NotRunningError", err)
	}
	if err := c.Undefine(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	_, err = virt.Open(ctx, virt.Config{URI: "nosuch:///x", Helper: os.Args[0]})
	if err == nil || !strings.Contains(err.Error(), "connect to nosuch:///x") {
		t.Fatalf("bad URI through the helper: %v", err)
	}
}
