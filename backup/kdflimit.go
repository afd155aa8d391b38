package backup

import "sync"

// kdfLimit is the KDF memory of one restore: no container may ask for
// more than max bytes, and all derivations running at once (the
// header's, qubes.xml's, those derived ahead) together stay within max
// too, so the look-ahead never multiplies what the scrypt tool itself
// would use (half of the RAM by default). One derivation alone always
// runs, whatever it needs below max.
type kdfLimit struct {
	max  uint64
	mu   sync.Mutex
	cond *sync.Cond
	used uint64
	peak uint64   // largest used (for tests)
	sc   *scratch // work areas, reused from one key to the next
}

// newKDFLimit's owner calls close when done with it.
func newKDFLimit(max uint64) *kdfLimit {
	l := &kdfLimit{max: max, sc: &scratch{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// fits reports whether n bytes could ever run at once.
func (l *kdfLimit) fits(n uint64) bool { return n <= l.max }

func (l *kdfLimit) acquire(n uint64) {
	l.mu.Lock()
	for l.used > 0 && l.used+n > l.max {
		l.cond.Wait()
	}
	l.used += n
	l.peak = max(l.peak, l.used)
	l.mu.Unlock()
}

func (l *kdfLimit) release(n uint64) {
	l.mu.Lock()
	l.used -= n
	l.cond.Broadcast()
	l.mu.Unlock()
}

// close unmaps the kept work areas.
func (l *kdfLimit) close() { l.sc.close() }
