package virt

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultURIChoice(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	p := probes{procXen: filepath.Join(dir, "proc-xen"), sockets: []string{filepath.Join(dir, "libvirt-sock")}}
	if got, want := p.defaultURI(state), "qemu:///embed?root="+state+"/libvirt"; got != want {
		t.Errorf("no xen, no daemon: %q, want %q", got, want)
	}
	// A socket file nobody listens on does not count as a daemon.
	l, err := net.Listen("unix", p.sockets[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := p.defaultURI(state); got != "qemu:///system" {
		t.Errorf("listening socket: %q, want qemu:///system", got)
	}
	l.Close()
	os.WriteFile(p.sockets[0], nil, 0o600)
	if got := p.defaultURI(state); !strings.HasPrefix(got, "qemu:///embed") {
		t.Errorf("dead socket: %q, want the embedded driver", got)
	}
	os.Mkdir(p.procXen, 0o755)
	if got := p.defaultURI(state); got != "xen:///system" {
		t.Errorf("/proc/xen: %q, want xen:///system", got)
	}
}

func TestURIHelpers(t *testing.T) {
	if r := EmbedRoot("qemu:///embed?root=/var/lib/qubes/libvirt"); r != "/var/lib/qubes/libvirt" {
		t.Errorf("EmbedRoot = %q", r)
	}
	for _, u := range []string{"qemu:///system", "xen:///system", "test:///default", "qemu+ssh://h/embed?root=/x"} {
		if r := EmbedRoot(u); r != "" {
			t.Errorf("EmbedRoot(%q) = %q, want empty", u, r)
		}
	}
	for u, d := range map[string]string{"xen:///system": "xen", "qemu+ssh://h/system": "qemu", "test:///default": "test"} {
		if got := Driver(u); got != d {
			t.Errorf("Driver(%q) = %q, want %q", u, got, d)
		}
	}
	if got := EmbedURI("/var/lib/qubes"); got != "qemu:///embed?root=/var/lib/qubes/libvirt" {
		t.Errorf("EmbedURI = %q", got)
	}
}

func TestEmbeddedRootLockAndConf(t *testing.T) {
	root := filepath.Join(t.TempDir(), "libvirt")
	fl, err := lockRoot(context.Background(), root, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + ".lock"); err != nil {
		t.Fatalf("lock file beside the root: %v", err)
	}
	// A second holder (another qvm) waits and then gives up with a clear error.
	_, err = lockRoot(context.Background(), root, 50*time.Millisecond)
	var lt *LockTimeoutError
	if !errors.As(err, &lt) || !strings.Contains(err.Error(), root) {
		t.Fatalf("second lock: %v, want LockTimeoutError naming %s", err, root)
	}
	fl.Unlock()
	fl2, err := lockRoot(context.Background(), root, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	fl2.Unlock()

	if err := prepareRoot(root); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(root, "etc", "qemu.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), `stdio_handler = "file"`) {
		t.Errorf("qemu.conf lacks stdio_handler = \"file\":\n%s", conf)
	}
}

func TestTestDriverLifecycle(t *testing.T) {
	ctx := context.Background()
	// A private test-driver state (test:///default is shared in the process).
	c, err := Open(ctx, Config{URI: "test:///default"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Driver() != "test" || c.Embedded() {
		t.Errorf("Driver/Embedded = %q/%v", c.Driver(), c.Embedded())
	}
	xml := `<domain type="test"><name>work</name><memory unit="MiB">400</memory><os><type arch="x86_64">hvm</type></os></domain>`
	if st, err := c.State("work"); err != nil || st != Halted {
		t.Fatalf("before start: %v %v, want Halted", st, err)
	}
	if err := c.Destroy("work"); !isNotRunning(err) {
		t.Errorf("kill of a halted qube: %v, want NotRunningError", err)
	}
	if _, err := c.CreatePaused(xml); err != nil {
		t.Fatal(err)
	}
	expect := func(want State) {
		t.Helper()
		st, err := c.State("work")
		if err != nil || st != want {
			t.Fatalf("state %v %v, want %v", st, err, want)
		}
		all, err := c.States(ctx)
		if err != nil || all["work"] != want && want != Halted {
			t.Fatalf("States()[work] = %v %v, want %v", all["work"], err, want)
		}
		if want == Halted {
			if _, ok := all["work"]; ok {
				t.Fatalf("States() lists halted work")
			}
		}
	}
	expect(Paused)
	if err := c.Resume("work"); err != nil {
		t.Fatal(err)
	}
	expect(Running)
	if err := c.Suspend("work"); err != nil {
		t.Fatal(err)
	}
	expect(Paused)
	if err := c.Resume("work"); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown("work"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.WaitHalted(wctx, "work", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	expect(Halted)
	// Starting again redefines from fresh XML over the inactive definition.
	if _, err := c.CreatePaused(xml); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := c.Destroy("work"); err != nil {
		t.Fatal(err)
	}
	expect(Halted)
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
	var nr *NotRunningError
	return errors.As(err, &nr)
}

func TestOpenBadURI(t *testing.T) {
	_, err := Open(context.Background(), Config{URI: "nosuch:///x"})
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
	c, err := Open(context.Background(), Config{StateDir: state, URI: EmbedURI(state)})
	if err != nil {
		if strings.Contains(err.Error(), "libvirt-qemu") {
			t.Skipf("system user libvirt-qemu missing: %v", err)
		}
		t.Fatal(err)
	}
	if !c.Embedded() {
		t.Errorf("Embedded() = false for %s", c.URI)
	}
	if _, err := lockRoot(context.Background(), filepath.Join(state, "libvirt"), 20*time.Millisecond); err == nil {
		t.Errorf("root not locked while connected")
	}
	st, err := c.States(context.Background())
	if err != nil || len(st) != 0 {
		t.Errorf("States = %v %v, want empty", st, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fl, err := lockRoot(context.Background(), filepath.Join(state, "libvirt"), 20*time.Millisecond)
	if err != nil {
		t.Fatalf("root still locked after Close: %v", err)
	}
	fl.Unlock()
}
