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
	fl, err := LockRoot(context.Background(), root, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + ".lock"); err != nil {
		t.Fatalf("lock file beside the root: %v", err)
	}
	// A second holder (another qvm) waits and then gives up with a clear error.
	_, err = LockRoot(context.Background(), root, 50*time.Millisecond)
	var lt *LockTimeoutError
	if !errors.As(err, &lt) || !strings.Contains(err.Error(), root) {
		t.Fatalf("second lock: %v, want LockTimeoutError naming %s", err, root)
	}
	fl.Unlock()
	fl2, err := LockRoot(context.Background(), root, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	fl2.Unlock()

	if err := PrepareRoot(root); err != nil {
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
