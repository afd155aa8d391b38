package backup

import (
	"sync"

	"golang.org/x/sys/unix"
)

// scratch keeps the KDF's mapped work areas (V, X and Y of one ROMix run)
// for the next derivation of the same backup or restore: faulting in a
// fresh 128 MiB costs 75-190 ms here, about half as much as computing
// the key in it. Areas are unmapped when the owner closes the cache; a
// nil *scratch maps and unmaps each area on its own.
type scratch struct {
	mu     sync.Mutex
	free   [][]byte
	closed bool
}

// maxScratchAreas bounds the idle areas kept: two pairs' worth.
const maxScratchAreas = 4

// get hands out an idle area of n bytes, or maps a new one; idle areas
// of other sizes are unmapped first, so that a backup whose containers
// ask for changing parameters does not pile up areas of each size.
func (s *scratch) get(n int) ([]byte, error) {
	if s != nil {
		s.mu.Lock()
		for i, b := range s.free {
			if len(b) == n {
				s.free = append(s.free[:i], s.free[i+1:]...)
				s.mu.Unlock()
				return b, nil
			}
		}
		other := s.free
		s.free = nil
		s.mu.Unlock()
		for _, b := range other {
			_ = unix.Munmap(b)
		}
	}
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	// Huge pages where the kernel gives them: fewer faults and TLB misses
	// on ROMix's random reads.
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	return mem, nil
}

func (s *scratch) put(b []byte) {
	if s != nil {
		s.mu.Lock()
		if !s.closed && len(s.free) < maxScratchAreas {
			s.free = append(s.free, b)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
	_ = unix.Munmap(b)
}

// close unmaps the idle areas; areas still in use are unmapped when
// they come back.
func (s *scratch) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	free := s.free
	s.free, s.closed = nil, true
	s.mu.Unlock()
	for _, b := range free {
		_ = unix.Munmap(b)
	}
}

// idle is the number of areas kept (for tests).
func (s *scratch) idle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.free)
}
