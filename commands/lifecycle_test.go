package commands

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/core/virt/lvconn"
)

// inProc runs qvm in this process against libvirt's test driver. The
// test driver's state lives as long as one connection to it is open, so
// the test keeps one (hold) while the commands connect and disconnect.
type inProc struct {
	t     *testing.T
	state string
	run   string
	hold  *lvconn.Conn
}

func newInProc(t *testing.T) *inProc {
	dir := t.TempDir()
	p := &inProc{t: t, state: filepath.Join(dir, "state"), run: filepath.Join(dir, "run")}
	t.Setenv("QVM_STATE_DIR", p.state)
	t.Setenv("QVM_RUN_DIR", p.run)
	t.Setenv("QVM_CONFIG", "/nonexistent")
	t.Setenv("QVM_LIBVIRT_URI", "test:///default")
	t.Setenv("QVM_QMEMMAN_SOCKET", filepath.Join(dir, "qmemman.sock"))
	// In process, so the commands' connection shares hold's test driver.
	virt.SetInProcess(lvconn.OpenHypervisor)
	t.Cleanup(func() { virt.SetInProcess(nil) })
	hold, err := lvconn.Open(context.Background(), virt.Config{URI: "test:///default"})
	if err != nil {
		t.Fatal(err)
	}
	p.hold = hold
	t.Cleanup(func() {
		// Leave the shared test driver as we found it.
		st, _ := hold.States(context.Background())
		for n := range st {
			if n != "test" {
				_ = hold.Destroy(n)
			}
			_ = hold.Undefine(n)
		}
		hold.Close()
	})
	// file-reflink without reflinks (copies) on whatever /tmp is.
	p.ok("init", "--reflink", "no")
	p.ok("pool", "add", "rl", "file-reflink", "-o", "dir_path="+filepath.Join(p.state, "rl"), "-o", "setup_check=False")
	p.ok("prefs", "--global", "default_pool", "rl")
	kdir := filepath.Join(p.state, "vm-kernels", "k1")
	os.MkdirAll(kdir, 0o755)
	os.WriteFile(filepath.Join(kdir, "vmlinuz"), []byte("kernel"), 0o644)
	return p
}

func (p *inProc) qvm(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := MainContext(context.Background(), append([]string{"qvm"}, args...), IO{In: strings.NewReader(""), Out: &out, Err: &errb}, time.Now)
	return out.String(), errb.String(), code
}

func (p *inProc) ok(args ...string) string {
	p.t.Helper()
	out, errs, code := p.qvm(args...)
	if code != 0 {
		p.t.Fatalf("qvm %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// create adds a qube with qvm create (which makes its volumes).
func (p *inProc) create(args ...string) {
	p.t.Helper()
	p.ok(append([]string{"create"}, args...)...)
}

func (p *inProc) state_(name string) virt.State {
	p.t.Helper()
	st, err := p.hold.State(name)
	if err != nil {
		p.t.Fatal(err)
	}
	return st
}

func (p *inProc) markers() []string {
	m, _ := filepath.Glob(filepath.Join(p.run, "volume-running-*"))
	return m
}

// The start/stop path in-process against test:///default: the order of
// spec/start.md §2 (storage started before the domain, memory asked),
// the XML libvirt receives, shutdown --wait running the storage stop, and
// the netvm chain started first.
func TestLifecycleTestDriver(t *testing.T) {
	p := newInProc(t)
	p.create("--standalone", "-l", "red", "--prop", "kernel=k1", "--prop", "netvm=", "--prop", "provides_network=True", "net")
	p.create("--standalone", "-l", "red", "--prop", "kernel=k1", "--prop", "netvm=net", "work")

	_, errs, code := p.qvm("start", "work")
	if code != 0 {
		t.Fatalf("start: %d %s", code, errs)
	}
	if p.state_("work") != virt.Running || p.state_("net") != virt.Running {
		t.Fatalf("work %s, net %s: want both Running (netvm first)", p.state_("work"), p.state_("net"))
	}
	if n := len(p.markers()); n == 0 {
		t.Errorf("no volume-running markers after start")
	}
	x, err := p.hold.XMLDesc("work")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vm-kernels/k1/vmlinuz", "rl/appvms/work/private-dirty.img", "state/appvms/work/console.log"} {
		if !strings.Contains(x, want) {
			t.Errorf("live XML lacks %q:\n%s", want, x)
		}
	}
	out := p.ok("ls", "--raw-data", "-O", "name,state")
	if !strings.Contains(out, "work|Running") || !strings.Contains(out, "net|Running") {
		t.Errorf("qvm ls: %q", out)
	}

	// net has a running client: refused without --force, exit code 1.
	_, errs, code = p.qvm("shutdown", "net")
	if code != 1 || !strings.Contains(errs, "Error: Failed to shut down: net: There are other VMs connected to this VM: work") ||
		!strings.Contains(errs, "Error: Retrying shutdown of qubes that were in use for 1 time(s)") {
		t.Errorf("shutdown of a netvm in use: %d %q", code, errs)
	}
	p.ok("pause", "work")
	if p.state_("work") != virt.Paused {
		t.Errorf("after pause: %s", p.state_("work"))
	}
	p.ok("unpause", "work")
	p.ok("shutdown", "--wait", "work", "net")
	if p.state_("work") != virt.Halted || p.state_("net") != virt.Halted {
		t.Errorf("after shutdown --wait: %s %s", p.state_("work"), p.state_("net"))
	}
	if m := p.markers(); len(m) != 0 {
		t.Errorf("storage not stopped by shutdown --wait: %v", m)
	}
	if _, err := os.Stat(filepath.Join(p.state, "rl", "appvms", "work", "private-dirty.img")); err == nil {
		t.Errorf("private-dirty.img left")
	}
	revs, _ := filepath.Glob(filepath.Join(p.state, "rl", "appvms", "work", "private.img.*@*Z"))
	if len(revs) != 1 {
		t.Errorf("revisions after the commit: %v", revs)
	}

	// Lazy reconcile: the domain stops behind qvm's back; the next locking
	// command (here qvm prefs) stops the storage.
	p.ok("start", "work")
	if err := p.hold.Destroy("work"); err != nil {
		t.Fatal(err)
	}
	if len(p.markers()) == 0 {
		t.Fatalf("markers gone before any qvm command ran")
	}
	p.ok("prefs", "work", "memory")
	for _, m := range p.markers() {
		if strings.Contains(m, "work") {
			t.Errorf("reconcile left %s", m)
		}
	}
	p.ok("kill", "--all")
	if m := p.markers(); len(m) != 0 {
		t.Errorf("markers after kill --all: %v", m)
	}
}

// A failure after the storage started (libvirt refuses the domain) undoes
// the storage start; nothing runs afterwards.
func TestLifecycleUndoOnDefineFailure(t *testing.T) {
	p := newInProc(t)
	p.create("--standalone", "-l", "red", "--prop", "kernel=k1", "--prop", "netvm=", "work")
	// Another domain with the same UUID makes libvirt refuse ours.
	var uuid string
	st := &store.Store{Dir: p.state}
	st.View(context.Background(), func(app *core.App) error {
		w, _ := app.Domain("work")
		uuid = w.UUID()
		return nil
	})
	if _, err := p.hold.Libvirt().DomainDefineXML(`<domain type="test"><name>squatter</name><uuid>` + uuid + `</uuid><memory>1024</memory><os><type>hvm</type></os></domain>`); err != nil {
		t.Fatal(err)
	}
	_, errs, code := p.qvm("start", "work")
	if code != 1 || !strings.Contains(errs, "Error: Starting qube failed: work: Start failed: operation failed: domain 'squatter' is already defined") {
		t.Fatalf("start: %d %q", code, errs)
	}
	if m := p.markers(); len(m) != 0 {
		t.Errorf("storage left started: %v", m)
	}
	if _, err := os.Stat(filepath.Join(p.state, "rl", "appvms", "work", "private-dirty.img")); err == nil {
		t.Errorf("private-dirty.img left")
	}
	if p.state_("work") != virt.Halted {
		t.Errorf("work is %s", p.state_("work"))
	}
	p.hold.Undefine("squatter")
}

// --all implies --force unless --exclude is given (cli.md §4); an
// excluded client keeps its netvm in use.
func TestShutdownAllForce(t *testing.T) {
	p := newInProc(t)
	p.create("--standalone", "-l", "red", "--prop", "kernel=k1", "--prop", "netvm=", "--prop", "provides_network=True", "net")
	p.create("--standalone", "-l", "red", "--prop", "kernel=k1", "--prop", "netvm=net", "work")
	p.create("--standalone", "-l", "red", "--prop", "kernel=k1", "--prop", "netvm=", "other")
	p.ok("start", "work", "other")

	_, errs, code := p.qvm("shutdown", "--all", "--exclude", "work")
	if code != 1 || !strings.Contains(errs, "Error: Failed to shut down: net: There are other VMs connected to this VM: work") {
		t.Errorf("--all --exclude work: exit %d, %q (want net refused)", code, errs)
	}
	if p.state_("other") != virt.Halted || p.state_("net") != virt.Running {
		t.Errorf("other %s, net %s", p.state_("other"), p.state_("net"))
	}
	p.ok("shutdown", "--all", "--exclude", "work", "--force")
	if p.state_("net") != virt.Halted || p.state_("work") != virt.Running {
		t.Errorf("--force: net %s, work %s", p.state_("net"), p.state_("work"))
	}
	p.ok("start", "net")
	p.ok("shutdown", "--all", "--wait")
	for _, n := range []string{"net", "work", "other"} {
		if p.state_(n) != virt.Halted {
			t.Errorf("--all: %s is %s", n, p.state_(n))
		}
	}
	if m := p.markers(); len(m) != 0 {
		t.Errorf("markers after shutdown --all --wait: %v", m)
	}
}
