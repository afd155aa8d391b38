package virthost

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/memd"
)

// recHost records, per session, what the daemon read and what it set, so
// the test can recompute the algorithm from the very facts it used.
type recHost struct {
	inner memd.Host
	mu    sync.Mutex
	log   []recEvent
}

type recEvent struct {
	kind  string // "domains", "hostmem", "set"
	doms  []memd.DomainFacts
	free  int64
	total int64
	set   memd.Target
}

func (r *recHost) Open(ctx context.Context) (memd.Session, error) {
	s, err := r.inner.Open(ctx)
	if err != nil {
		return nil, err
	}
	r.add(recEvent{kind: "open"})
	return &recSession{r: r, s: s}, nil
}

func (r *recHost) add(e recEvent) {
	r.mu.Lock()
	r.log = append(r.log, e)
	r.mu.Unlock()
}

func (r *recHost) take() []recEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.log
	r.log = nil
	return l
}

type recSession struct {
	r *recHost
	s memd.Session
}

func (s *recSession) HostMem(ctx context.Context) (int64, int64, error) {
	t, f, err := s.s.HostMem(ctx)
	s.r.add(recEvent{kind: "hostmem", total: t, free: f})
	return t, f, err
}

func (s *recSession) Domains(ctx context.Context) ([]memd.DomainFacts, error) {
	d, err := s.s.Domains(ctx)
	s.r.add(recEvent{kind: "domains", doms: d})
	return d, err
}

func (s *recSession) SetTarget(ctx context.Context, id string, b int64, hp bool) error {
	s.r.add(recEvent{kind: "set", set: memd.Target{ID: id, Mem: b}})
	return s.s.SetTarget(ctx, id, b, hp)
}

func (s *recSession) Close() error { return s.s.Close() }

// testKernel builds (once, cached in bin/) the guest of `make test-kernel`.
func testKernel(t *testing.T) (string, string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "bin", "test-kernel")
	out, err := exec.Command("make", "--no-print-directory", "-s", "-C", root, "test-kernel", "KERNEL_DIR="+dir).Output()
	if err != nil {
		t.Skipf("make test-kernel failed (Debian cloud kernel package not downloadable here?): %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatal("make test-kernel printed no version")
	}
	return dir, f[len(f)-1]
}

// fillInitramfs repacks the test guest's initramfs so that a guest booted
// with memd_fill=N:S starts keeping N MiB in RAM (a file on its rootfs),
// as a busy qube would, S seconds after it booted.
func fillInitramfs(t *testing.T, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("sh", "-ec", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", script, err, out)
		}
	}
	sh("gzip -dc " + src + " | cpio -idm --quiet")
	init, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil {
		t.Fatal(err)
	}
	fill := `for w in $(cat /proc/cmdline); do case $w in memd_fill=*) v=${w#memd_fill=}; n=${v%%:*}; t=${v#*:}; (
sleep $t
dd if=/dev/zero of=/fill bs=1M count=$n 2>/dev/null
echo "memd: holding $n MiB") & ;; esac; done
`
	loop := "while :; do sleep 3600; done"
	if !strings.Contains(string(init), loop) {
		t.Fatal("test guest init has no final loop to insert before")
	}
	patched := strings.Replace(string(init), loop, fill+loop, 1)
	if err := os.WriteFile(filepath.Join(dir, "init"), []byte(patched), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initramfs")
	sh("find . | cpio -o -H newc --quiet | gzip -1 > " + out)
	return out
}

func guestXML(name, kernel, initrd, cmdline, console string, maxMiB, curMiB int) string {
	return fmt.Sprintf(`<domain type="qemu">
  <name>%s</name>
  <memory unit="MiB">%d</memory>
  <currentMemory unit="MiB">%d</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64">hvm</type><kernel>%s</kernel><initrd>%s</initrd><cmdline>%s</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type="file"><source path="%s"/><target port="0"/></serial>
    <memballoon model="virtio"><stats period="1"/></memballoon>
  </devices>
</domain>`, name, maxMiB, curMiB, kernel, initrd, cmdline, console)
}

// checkPass recomputes the first balancing pass of events with the
// algorithm and requires the targets set to be its result, in order (the
// last one may be do_balance's "stuck" fallback, which is checked too).
func checkPass(t *testing.T, p memd.Params, events []recEvent) []memd.Target {
	t.Helper()
	// A pass: open, domains (list), hostmem (list), domains (refresh),
	// hostmem (free), then sets interleaved with free-memory checks.
	var seq []recEvent
	for _, e := range events {
		if e.kind == "open" && seq != nil {
			break
		}
		seq = append(seq, e)
	}
	if len(seq) < 5 || seq[1].kind != "domains" || seq[3].kind != "domains" || seq[4].kind != "hostmem" {
		t.Fatalf("unexpected pass shape: %+v", seq)
	}
	usage := map[string]memd.DomainFacts{}
	for _, f := range seq[1].doms {
		usage[f.ID] = f
	}
	var doms []*memd.Domain
	for _, f := range seq[3].doms {
		u := usage[f.ID]
		doms = append(doms, &memd.Domain{ID: f.ID, MemCurrent: f.MemCurrent, MemActual: f.MemCurrent, MemMax: f.MemMax, HasMeminfo: u.HasMeminfo, MemUsed: u.MemUsed})
	}
	xenFree := int64(float64(seq[4].free) * (1 / 1.00781))
	want, _, err := p.Balance(xenFree-memd.XenFreeMemLeft, doms)
	if err != nil {
		t.Fatal(err)
	}
	var sets []memd.Target
	for _, e := range seq {
		if e.kind == "set" {
			sets = append(sets, e.set)
		}
	}
	if len(sets) == 0 {
		t.Fatalf("pass set no target; algorithm said %v (domains %+v, free %d)", want, seq[3].doms, xenFree)
	}
	for i, s := range sets {
		if s != want[i] && (i != len(sets)-1 || s.ID != want[i].ID) {
			t.Fatalf("target %d set %v, algorithm says %v (all: %v)", i, s, want[i], want)
		}
	}
	t.Logf("pass: free %d MiB, facts %+v -> targets %v (set %v)", xenFree/memd.MiB, seq[3].doms, want, sets)
	return sets
}

// Two qubes from the test kernel (400 MiB of 768 MiB max each) on the
// embedded TCG driver share a 1000 MiB budget. Idle, both get the same
// larger target; when one fills 300 MiB (30 s after boot) its preferred
// memory rises and qmemmand moves memory from the idle one to it, as the
// algorithm says (recomputed from the facts each pass read). The targets
// are read back from libvirt's domain info.
func TestRealGuestsBalance(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no real guests")
	}
	needEmbedded(t)
	for _, p := range []struct{ file, pkg string }{{"/usr/bin/qemu-system-x86_64", "qemu-system-x86"}, {"/bin/busybox", "busybox-static"}, {"/usr/bin/cpio", "cpio"}} {
		if _, err := os.Stat(p.file); err != nil {
			t.Skipf("%s is missing (package %s)", p.file, p.pkg)
		}
	}
	kdir, version := testKernel(t)
	kernel := filepath.Join(kdir, version, "vmlinuz")
	initrd := fillInitramfs(t, filepath.Join(kdir, version, "initramfs"))
	work := t.TempDir()
	if d := os.Getenv("MEMD_DEBUG_DIR"); d != "" { // keep consoles and XML for a look after a failure
		work = d
	}
	root := filepath.Join(work, "libvirt")
	cfg := virt.Config{URI: "qemu:///embed?root=" + root, LockTimeout: 60 * time.Second}
	ctx := context.Background()

	guests := func(args ...string) error {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "MEMD_TEST_GUESTS_URI="+cfg.URI)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v: %s", args, err, out)
		}
		return nil
	}
	var files []string
	for _, g := range []struct{ name, extra string }{{"memd-a", ""}, {"memd-b", " memd_fill=300:30"}} {
		xml := guestXML(g.name, kernel, initrd, "console=ttyS0 quiet panic=-1"+g.extra, filepath.Join(work, g.name+".log"), 768, 400)
		f := filepath.Join(work, g.name+".xml")
		if err := os.WriteFile(f, []byte(xml), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	t.Cleanup(func() {
		if err := guests("destroy"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := guests(files...); err != nil {
		t.Fatal(err)
	}

	rec := &recHost{inner: helperHost(cfg, 1000*memd.MiB)}
	params := memd.DefaultParams()
	// A TCG guest balloons slower than a Xen one: give do_balance's five
	// waits for a donor more time than BALLOON_DELAY.
	d := memd.NewDaemon(rec, memd.Options{Params: params, RunDir: t.TempDir(), Delay: 500 * time.Millisecond})

	facts := func() []memd.DomainFacts {
		s, err := rec.inner.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f, err := s.Domains(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	waitFor := func(what string, limit time.Duration, ok func([]memd.DomainFacts) bool) []memd.DomainFacts {
		t.Helper()
		deadline := time.Now().Add(limit)
		for {
			f := facts()
			if ok(f) {
				return f
			}
			if time.Now().After(deadline) {
				a, _ := os.ReadFile(filepath.Join(work, "memd-b.log"))
				t.Fatalf("%s: not after %s; facts %+v; guest b console: %s", what, limit, f, a)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// Phase 1: both report usage (balloon statistics), both idle.
	waitFor("balloon statistics from both guests, balloons down to 400 MiB", 90*time.Second, func(f []memd.DomainFacts) bool {
		return len(f) == 2 && f[0].HasMeminfo && f[1].HasMeminfo && f[0].MemCurrent == 400*memd.MiB && f[1].MemCurrent == 400*memd.MiB
	})
	rec.take()
	if err := d.Balance(ctx); err != nil {
		t.Fatal(err)
	}
	sets := checkPass(t, params, rec.take())
	readBack(t, waitFor, sets)
	idle := map[string]int64{}
	for _, x := range d.Domains() {
		idle[x.ID] = x.LastTarget
	}
	// Normally guest b has not started filling yet (it waits 30 s after
	// boot): then both idle guests got the same target.
	bWasIdle := d.Domains()[1].MemUsed < 150*memd.MiB
	if bWasIdle && (len(sets) != 2 || idle["1"] != idle["2"] || idle["1"] <= 400*memd.MiB) {
		t.Fatalf("idle guests: targets %v, want the same target above 400 MiB for both", idle)
	}

	// Phase 2: guest b holds 300 MiB more; its preferred memory rises.
	f := waitFor("guest b using 300 MiB", 120*time.Second, func(f []memd.DomainFacts) bool {
		return len(f) == 2 && f[1].MemUsed > 250*memd.MiB
	})
	t.Logf("after the fill: %+v", f)
	for i := 0; i < 3; i++ {
		rec.take()
		if err := d.Balance(ctx); err != nil {
			t.Fatal(err)
		}
		ev := rec.take()
		if hasSet(ev) {
			sets = checkPass(t, params, ev)
			readBack(t, waitFor, sets)
		}
	}
	doms := d.Domains()
	a, b := doms[0], doms[1]
	if b.LastTarget <= a.LastTarget || bWasIdle && (b.LastTarget <= idle[b.ID] || a.LastTarget >= idle[a.ID]) {
		t.Errorf("targets did not move toward the busy guest: before %v (b idle: %v), now a=%d b=%d", idle, bWasIdle, a.LastTarget, b.LastTarget)
	}
}

func hasSet(ev []recEvent) bool {
	for _, e := range ev {
		if e.kind == "set" {
			return true
		}
	}
	return false
}

// readBack waits until libvirt reports each domain at its new target
// (QEMU's balloon works in pages; allow 1 MiB).
func readBack(t *testing.T, waitFor func(string, time.Duration, func([]memd.DomainFacts) bool) []memd.DomainFacts, sets []memd.Target) {
	t.Helper()
	last := map[string]int64{}
	for _, s := range sets {
		last[s.ID] = s.Mem
	}
	waitFor(fmt.Sprintf("domains at their targets %v", last), 60*time.Second, func(f []memd.DomainFacts) bool {
		for _, x := range f {
			if want, ok := last[x.ID]; ok && (x.MemCurrent-want > memd.MiB || want-x.MemCurrent > memd.MiB) {
				return false
			}
		}
		return true
	})
}
