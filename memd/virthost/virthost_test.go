package virthost

import (
	"context"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/memd"
)

// test:///default has one running domain "test" (id 1, 2 GiB of 8 GiB
// max) whose balloon statistics say 2 GiB available, 1 GiB usable; the
// node has 3 GiB. Its state is shared by every connection of the process.
func TestFactsAndTargetOnTestDriver(t *testing.T) {
	h := New(virt.Config{URI: "test:///default"}, Options{})
	defer h.Close()
	ctx := context.Background()
	s, err := h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetTarget(ctx, "1", 2048*memd.MiB, false); err != nil {
		t.Fatal(err)
	}
	total, free, err := s.HostMem(ctx)
	if err != nil || total != 3*1024*memd.MiB || free <= 0 {
		t.Fatalf("HostMem = %d, %d, %v", total, free, err)
	}
	doms, err := s.Domains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := memd.DomainFacts{ID: "1", MemCurrent: 2048 * memd.MiB, MemMax: 8192 * memd.MiB, HasMeminfo: true, MemUsed: 1024 * memd.MiB}
	if len(doms) != 1 || doms[0] != want {
		t.Fatalf("Domains = %+v, want [%+v]", doms, want)
	}
	if err := s.SetTarget(ctx, "1", 1500*memd.MiB, false); err != nil {
		t.Fatal(err)
	}
	doms, _ = s.Domains(ctx)
	if doms[0].MemCurrent != 1500*memd.MiB {
		t.Errorf("after SetTarget: current %d, want %d", doms[0].MemCurrent, 1500*memd.MiB)
	}
	if err := s.SetTarget(ctx, "99", memd.MiB, false); err == nil {
		t.Error("SetTarget on a missing domain: no error")
	}
}

// A daemon pass over test:///default: the node reports 3 MiB free, the
// domain holds 2 GiB and prefers 1.3 GiB; its surplus makes the
// enough-memory branch give it back all but the reserve. The target the
// algorithm computes is read back through libvirt.
func TestDaemonPassOnTestDriver(t *testing.T) {
	h := New(virt.Config{URI: "test:///default"}, Options{})
	defer h.Close()
	ctx := context.Background()
	s, _ := h.Open(ctx)
	if err := s.SetTarget(ctx, "1", 2048*memd.MiB, false); err != nil {
		t.Fatal(err)
	}
	d := memd.NewDaemon(h, memd.Options{Params: memd.DefaultParams(), RunDir: t.TempDir(), Delay: time.Millisecond})
	if err := d.Balance(ctx); err != nil {
		t.Fatal(err)
	}
	_, free, _ := s.HostMem(ctx)
	xenFree := int64(float64(free) * (1 / 1.00781))
	want, branch, err := memd.DefaultParams().Balance(xenFree-memd.XenFreeMemLeft, []*memd.Domain{
		{ID: "1", HasMeminfo: true, MemUsed: 1024 * memd.MiB, MemMax: 8192 * memd.MiB, MemActual: 2048 * memd.MiB, MemCurrent: 2048 * memd.MiB}})
	if err != nil || branch != memd.BranchEnough || len(want) != 1 {
		t.Fatalf("expected result: %v %s %v", want, branch, err)
	}
	doms, _ := s.Domains(ctx)
	if got := doms[0].MemCurrent; got != want[0].Mem/1024*1024 {
		t.Errorf("domain memory %d after the pass, want %d (in KiB units)", got, want[0].Mem)
	}
	if got := d.Domains()[0].LastTarget; got != want[0].Mem {
		t.Errorf("last_target %d, want %d", got, want[0].Mem)
	}
}

func TestWatchSeesNewDomain(t *testing.T) {
	StartEventLoop()
	h := New(virt.Config{URI: "test:///default"}, Options{})
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan struct{}, 8)
	done := make(chan error, 1)
	go func() { done <- h.Watch(ctx, func() { events <- struct{}{} }) }()
	time.Sleep(100 * time.Millisecond)
	c, err := libvirt.NewConnect("test:///default")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dom, err := c.DomainCreateXML(`<domain type="test"><name>memd-watch</name><memory>262144</memory><os><type>hvm</type></os></domain>`, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { dom.Destroy(); dom.Free() }()
	select {
	case <-events:
	case <-time.After(5 * time.Second):
		t.Fatal("no lifecycle event for a new domain")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedHasNoEvents(t *testing.T) {
	h := New(virt.Config{URI: "qemu:///embed?root=" + t.TempDir() + "/libvirt"}, Options{})
	if !h.Embedded() {
		t.Fatal("embed URI not seen as embedded")
	}
	if err := h.Watch(context.Background(), func() {}); err != ErrNoEvents {
		t.Fatalf("Watch = %v, want ErrNoEvents", err)
	}
}

func TestBudget(t *testing.T) {
	h := New(virt.Config{URI: "test:///default"}, Options{Budget: 8192 * memd.MiB})
	defer h.Close()
	ctx := context.Background()
	s, _ := h.Open(ctx)
	if err := s.SetTarget(ctx, "1", 2048*memd.MiB, false); err != nil {
		t.Fatal(err)
	}
	total, free, err := s.HostMem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(float64(total) * (1 / 1.00781)); got != 8192*memd.MiB {
		t.Errorf("total after the overhead factor %d, want the budget", got)
	}
	if got := int64(float64(free) * (1 / 1.00781)); got != 6144*memd.MiB {
		t.Errorf("free after the overhead factor %d, want budget − 2 GiB", got)
	}
}

// Through the helper child (as qmemmand runs): the same facts, and the
// watch helper reports a new domain.
func TestHelperSessionAndWatch(t *testing.T) {
	h := helperHost(virt.Config{URI: "test:///default"}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	doms, err := s.Domains(ctx)
	if err != nil || len(doms) != 1 || doms[0].ID != "1" || !doms[0].HasMeminfo || doms[0].MemMax != 8192*memd.MiB {
		t.Fatalf("Domains through the helper = %+v, %v", doms, err)
	}
	if total, _, err := s.HostMem(ctx); err != nil || total != 3*1024*memd.MiB {
		t.Fatalf("HostMem through the helper = %d, %v", total, err)
	}
	if err := s.SetTarget(ctx, "1", 1800*memd.MiB, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTarget(ctx, "77", memd.MiB, false); err == nil {
		t.Error("SetTarget of a missing domain through the helper: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Not embedded: the next session is the same helper, holding the same
	// connection (test:///default state is per process: the target stuck).
	s, err = h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if doms, err := s.Domains(ctx); err != nil || doms[0].MemCurrent != 1800*memd.MiB {
		t.Fatalf("second session: %+v %v, want the held helper's state (1800 MiB)", doms, err)
	}
	s.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// test:///default gives each process its own state, so the event comes
	// from the helper's own view: a watch helper must at least hold and
	// report readiness and stop with ctx.
	done := make(chan error, 1)
	go func() { done <- h.Watch(ctx, func() {}) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch helper did not stop with its context")
	}
}
