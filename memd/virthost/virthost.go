// Package virthost is qmemmand's hypervisor side on libvirt: host and
// domain memory facts, balloon targets and lifecycle events. It connects
// through core/virt, which picks the URI and owns the embedded driver's
// lock file.
package virthost

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"libvirt.org/go/libvirt"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/core/virt/lvconn"
	"github.com/qvm-dev/qvm/memd"
	"github.com/qvm-dev/qvm/memd/virtclient"
)

// StatsPeriod is the balloon statistics period (seconds) set on domains
// that do not report usage yet; QEMU's virtio-balloon reports nothing
// without one.
const StatsPeriod = 1

// Host implements memd.Host on libvirt. With a daemon-backed URI (Xen,
// libvirtd) it holds one connection; with the embedded driver it connects,
// under qvm's lock, only for the length of one session.
type Host struct {
	cfg      virt.Config
	opts     Options
	embedded bool

	mu      sync.Mutex
	held    *lvconn.Conn
	periods map[string]bool // domain UUIDs whose stats period we set
}

// Options tune a Host.
type Options struct {
	// Budget, when positive, is the memory (bytes) qmemmand shares between
	// the domains instead of the host's own free memory: total = Budget and
	// free = Budget − Σ current allocations. On a KVM host, whose page cache
	// and other processes make "free" a moving target, this says how much
	// of the machine belongs to the guests.
	Budget int64
}

// New returns a Host for cfg (an empty URI picks it as qvm does).
func New(cfg virt.Config, opts Options) *Host {
	if cfg.URI == "" {
		cfg.URI = virt.DefaultURI(cfg.StateDir)
	}
	return &Host{cfg: cfg, opts: opts, embedded: virt.EmbedRoot(cfg.URI) != "", periods: map[string]bool{}}
}

// URI is the connection URI in use.
func (h *Host) URI() string { return h.cfg.URI }

// Embedded reports whether sessions take the embedded driver's lock.
func (h *Host) Embedded() bool { return h.embedded }

// Open returns a session; for the embedded driver it connects now. In a
// long-running process use virtclient instead: libvirt allows only 16
// embedded connections per process and keeps the driver loaded after the
// first.
func (h *Host) Open(ctx context.Context) (memd.Session, error) {
	return h.openDirect(ctx)
}

func (h *Host) openDirect(ctx context.Context) (*session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.embedded {
		c, err := lvconn.Open(ctx, h.cfg)
		if err != nil {
			return nil, err
		}
		return &session{h: h, c: c, owned: true}, nil
	}
	if h.held == nil {
		c, err := lvconn.Open(ctx, h.cfg)
		if err != nil {
			return nil, err
		}
		h.held = c
	}
	return &session{h: h, c: h.held}, nil
}

// Close drops a held connection.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		return nil
	}
	err := h.held.Close()
	h.held = nil
	return err
}

// Watch calls notify on every domain lifecycle event until ctx ends. It
// needs a held connection, so with the embedded driver it returns at once
// with ErrNoEvents and qmemmand lists domains on every pass instead.
func (h *Host) Watch(ctx context.Context, notify func()) error {
	if h.embedded {
		return ErrNoEvents
	}
	s, err := h.openDirect(ctx)
	if err != nil {
		return err
	}
	lv := s.c.Libvirt()
	id, err := lv.DomainEventLifecycleRegister(nil, func(*libvirt.Connect, *libvirt.Domain, *libvirt.DomainEventLifecycle) {
		notify()
	})
	if err != nil {
		return fmt.Errorf("lifecycle events: %w", err)
	}
	<-ctx.Done()
	_ = lv.DomainEventDeregister(id)
	return nil
}

// ErrNoEvents: events need a connection that is held between passes.
var ErrNoEvents = virtclient.ErrNoEvents

// StartEventLoop registers libvirt's default event loop (needed for
// lifecycle events); call it before the first connection.
func StartEventLoop() { lvconn.StartEventLoop() }

type session struct {
	h     *Host
	c     *lvconn.Conn
	owned bool
}

func (s *session) Close() error {
	if s.owned {
		return s.c.Close()
	}
	return nil
}

// HostMem: the budget when one is set; else total from the node info, free
// from the node memory statistics
// (free + buffers + cached: what the host can hand to guests) where the
// driver has them, else libvirt's free memory.
func (s *session) HostMem(ctx context.Context) (int64, int64, error) {
	if b := s.h.opts.Budget; b > 0 {
		doms, err := s.Domains(ctx)
		if err != nil {
			return 0, 0, err
		}
		free := b
		for _, d := range doms {
			free -= d.MemCurrent
		}
		// The hypervisor-side figures carry the overhead factor the daemon
		// takes off again; scale up so the budget is exact.
		return scaleUp(b), scaleUp(free), nil
	}
	lv := s.c.Libvirt()
	ni, err := lv.GetNodeInfo()
	if err != nil {
		return 0, 0, fmt.Errorf("node info: %w", err)
	}
	total := int64(ni.Memory) * 1024
	if s.c.Driver() != "xen" {
		if ms, err := lv.GetMemoryStats(libvirt.NODE_MEMORY_STATS_ALL_CELLS, 0); err == nil && ms.FreeSet {
			return total, int64(ms.Free+ms.Buffers+ms.Cached) * 1024, nil
		}
	}
	free, err := lv.GetFreeMemory()
	if err != nil {
		return 0, 0, fmt.Errorf("free memory: %w", err)
	}
	return total, int64(free), nil
}

// Domains lists running domains by id. A domain's usage is its balloon
// statistics' available − usable (or − unused) memory; without them it
// has no meminfo and takes no part in balancing.
func (s *session) Domains(context.Context) ([]memd.DomainFacts, error) {
	lv := s.c.Libvirt()
	doms, err := lv.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	out := make([]memd.DomainFacts, 0, len(doms))
	for i := range doms {
		d := &doms[i]
		f, ok := s.facts(d)
		d.Free()
		if ok {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b memd.DomainFacts) int {
		x, _ := strconv.Atoi(a.ID)
		y, _ := strconv.Atoi(b.ID)
		return x - y
	})
	return out, nil
}

func (s *session) facts(d *libvirt.Domain) (memd.DomainFacts, bool) {
	id, err := d.GetID()
	if err != nil {
		return memd.DomainFacts{}, false // gone meanwhile
	}
	info, err := d.GetInfo()
	if err != nil {
		return memd.DomainFacts{}, false
	}
	f := memd.DomainFacts{ID: strconv.FormatUint(uint64(id), 10), MemCurrent: int64(info.Memory) * 1024, MemMax: int64(info.MaxMem) * 1024}
	stats, err := d.MemoryStats(uint32(libvirt.DOMAIN_MEMORY_STAT_NR), 0)
	if err == nil {
		var avail, usable, unused int64 = -1, -1, -1
		for _, st := range stats {
			switch libvirt.DomainMemoryStatTags(st.Tag) {
			case libvirt.DOMAIN_MEMORY_STAT_AVAILABLE:
				avail = int64(st.Val)
			case libvirt.DOMAIN_MEMORY_STAT_USABLE:
				usable = int64(st.Val)
			case libvirt.DOMAIN_MEMORY_STAT_UNUSED:
				unused = int64(st.Val)
			}
		}
		switch {
		case avail >= 0 && usable >= 0:
			f.HasMeminfo, f.MemUsed = true, (avail-usable)*1024
		case avail >= 0 && unused >= 0:
			f.HasMeminfo, f.MemUsed = true, (avail-unused)*1024
		}
	}
	if !f.HasMeminfo {
		s.askForStats(d)
	}
	return f, true
}

// askForStats sets the statistics period once per domain (by UUID).
func (s *session) askForStats(d *libvirt.Domain) {
	uuid, err := d.GetUUIDString()
	if err != nil {
		return
	}
	s.h.mu.Lock()
	done := s.h.periods[uuid]
	s.h.periods[uuid] = true
	s.h.mu.Unlock()
	if !done {
		_ = d.SetMemoryStatsPeriod(StatsPeriod, libvirt.DOMAIN_MEM_LIVE)
	}
}

// SetTarget sets the domain's live balloon target.
func (s *session) SetTarget(_ context.Context, id string, bytes int64, _ bool) error {
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return fmt.Errorf("domain id %q: %w", id, err)
	}
	d, err := s.c.Libvirt().LookupDomainById(uint32(n))
	if err != nil {
		return fmt.Errorf("domain %s: %w", id, err)
	}
	defer d.Free()
	if bytes < 0 {
		bytes = 0
	}
	if err := d.SetMemoryFlags(uint64(bytes/1024), libvirt.DOMAIN_MEM_LIVE); err != nil {
		return fmt.Errorf("domain %s: set memory: %w", id, err)
	}
	return nil
}

// scaleUp undoes qmemman's 1/1.00781 overhead factor (rounding up).
func scaleUp(v int64) int64 {
	if v <= 0 {
		return v
	}
	return int64(float64(v)*1.00781) + 1
}
