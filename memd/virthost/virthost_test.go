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
