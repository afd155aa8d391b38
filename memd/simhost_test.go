package memd

import (
	"context"
	"errors"
	"sync"
)

// simHost is a simulated hypervisor for the daemon tests: free memory is
// what the domains do not hold, and a domain follows its balloon target at
// once unless it is stuck.
type simHost struct {
	mu    sync.Mutex
	total int64
	doms  []*simDom
	sets  []Target // every SetTarget, in order
	open  int      // sessions open now
	maxOp int      // most sessions open at once
}

type simDom struct {
	facts DomainFacts
	stuck bool // ignores targets (a guest without a balloon driver)
	slow  bool // moves only half way to each target
}

func (h *simHost) add(id string, current, max, used int64) *simDom {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := &simDom{facts: DomainFacts{ID: id, MemCurrent: current, MemMax: max, HasMeminfo: used >= 0, MemUsed: max64(used, 0)}}
	h.doms = append(h.doms, d)
	return d
}

func max64(a, b int64) int64 { return max(a, b) }

func (h *simHost) Open(context.Context) (Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.open++
	h.maxOp = max(h.maxOp, h.open)
	return &simSession{h: h}, nil
}

type simSession struct {
	h      *simHost
	closed bool
}

func (s *simSession) HostMem(context.Context) (int64, int64, error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	free := s.h.total
	for _, d := range s.h.doms {
		free -= d.facts.MemCurrent
	}
	// Undo the overhead factor so the daemon sees exactly `free`.
	return s.h.total, int64(float64(free)*1.00781) + 1, nil
}

func (s *simSession) Domains(context.Context) ([]DomainFacts, error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	out := make([]DomainFacts, len(s.h.doms))
	for i, d := range s.h.doms {
		out[i] = d.facts
	}
	return out, nil
}

func (s *simSession) SetTarget(_ context.Context, id string, bytes int64, _ bool) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.sets = append(s.h.sets, Target{id, bytes})
	for _, d := range s.h.doms {
		if d.facts.ID == id {
			switch {
			case d.slow:
				d.facts.MemCurrent += (min(bytes, d.facts.MemMax) - d.facts.MemCurrent) / 2
			case !d.stuck:
				d.facts.MemCurrent = min(bytes, d.facts.MemMax)
			}
			return nil
		}
	}
	return errors.New("no such domain")
}

func (s *simSession) Close() error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.h.open--
	}
	return nil
}

func (h *simHost) current(id string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range h.doms {
		if d.facts.ID == id {
			return d.facts.MemCurrent
		}
	}
	return -1
}
