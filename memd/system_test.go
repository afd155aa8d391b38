package memd

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// One pass sets exactly the targets the algorithm computes from the host's
// facts, in its order, and publishes the available memory.
func TestBalancePassAppliesAlgorithm(t *testing.T) {
	h := &simHost{total: 8192 * mb}
	h.add("1", 3072*mb, 4096*mb, 1024*mb)
	h.add("2", 1024*mb, 4096*mb, 900*mb)
	h.add("3", 512*mb, 4096*mb, -1) // no meminfo: left alone
	d := newTestDaemon(t, h)
	free := int64(8192-3072-1024-512) * mb
	want, _, err := DefaultParams().Balance(free-XenFreeMemLeft, []*Domain{
		dom("1", 1024*mb, 4096*mb, 3072*mb), dom("2", 900*mb, 4096*mb, 1024*mb), noMeminfo("3", 4096*mb, 512*mb)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Balance(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.sets, want) {
		t.Fatalf("targets set %v, want %v", h.sets, want)
	}
	data, err := os.ReadFile(filepath.Join(d.opts.RunDir, "qmemman-avail-mem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strconv.ParseInt(string(data), 10, 64); err != nil {
		t.Errorf("qmemman-avail-mem = %q", data)
	}
	// Balanced: a second pass finds nothing significant to do.
	n := len(h.sets)
	if err := d.Balance(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.sets) != n {
		t.Errorf("second pass set %v", h.sets[n:])
	}
}

func TestDoNotMembalance(t *testing.T) {
	h := twoGuests()
	d := newTestDaemon(t, h)
	if err := os.WriteFile(filepath.Join(d.opts.RunDir, "do-not-membalance"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Balance(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.sets) != 0 {
		t.Errorf("balanced despite do-not-membalance: %v", h.sets)
	}
}

// A donor that does not give memory back: the pass stops after 5 tries and
// marks it no_progress; the next pass leaves it out.
func TestStuckDonorMarkedNoProgress(t *testing.T) {
	h := &simHost{total: 4096 * mb}
	a := h.add("1", 2500*mb, 4096*mb, 200*mb) // big donor
	h.add("2", 1400*mb, 4096*mb, 1300*mb)     // acceptor
	a.stuck = true
	d := newTestDaemon(t, h)
	if err := d.Balance(context.Background()); err != nil {
		t.Fatal(err)
	}
	doms := d.Domains()
	if doms[0].LastTarget >= 2500*mb {
		t.Fatalf("donor target %d not lowered", doms[0].LastTarget)
	}
	if !doms[0].NoProgress || doms[0].SlowMemsetReact {
		t.Errorf("donor flags no_progress=%v slow=%v, want true/false", doms[0].NoProgress, doms[0].SlowMemsetReact)
	}
	// The acceptor waited for the donor, then got what is free now.
	if want := int64(4096-2500-1400+1400-50) * mb; abs(doms[1].LastTarget-want) > 2 {
		t.Errorf("acceptor target %d, want %d", doms[1].LastTarget, want)
	}
	// Next pass: the donor is out of the algorithm until it follows.
	n := len(h.sets)
	if err := d.Balance(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range h.sets[n:] {
		if s.ID == "1" {
			t.Errorf("no_progress donor asked again: %v", s)
		}
	}
}

// A donor that moves but not far enough is marked slow_memset_react, not
// no_progress, and stays in the algorithm.
func TestSlowDonorMarkedSlow(t *testing.T) {
	h := &simHost{total: 4096 * mb}
	a := h.add("1", 2500*mb, 4096*mb, 200*mb)
	h.add("2", 1400*mb, 4096*mb, 1300*mb)
	a.slow = true
	d := newTestDaemon(t, h)
	if err := d.Balance(context.Background()); err != nil {
		t.Fatal(err)
	}
	doms := d.Domains()
	if doms[0].NoProgress || !doms[0].SlowMemsetReact {
		t.Errorf("slow donor flags no_progress=%v slow=%v, want false/true", doms[0].NoProgress, doms[0].SlowMemsetReact)
	}
}
