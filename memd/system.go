package memd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Options configure a Daemon.
type Options struct {
	Params Params
	// RunDir holds qmemman-avail-mem and the do-not-membalance switch
	// (/var/run/qubes).
	RunDir string
	// Delay is BALLOON_DELAY (0.1 s); tests shorten it.
	Delay  time.Duration
	Logger *slog.Logger
}

// Daemon is the balancer's state (the reference's SystemState plus the
// global lock). Every method that touches domains runs under mu.
type Daemon struct {
	opts Options
	host Host
	log  *slog.Logger

	mu           sync.Mutex // GLOBAL_LOCK: balancing, list updates, client requests
	doms         []*Domain  // discovery order: the algorithm's iteration order
	byID         map[string]*Domain
	allPhysMem   int64
	forceRefresh bool
	// lastFree is get_free_xen_mem at the end of the last pass (ok: one
	// was seen), for requests that cannot open a session.
	lastFree   int64
	lastFreeOK bool
}

// NewDaemon returns a Daemon driving host.
func NewDaemon(host Host, opts Options) *Daemon {
	if opts.Delay == 0 {
		opts.Delay = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RunDir == "" {
		opts.RunDir = "/var/run/qubes"
	}
	return &Daemon{opts: opts, host: host, log: opts.Logger, byID: map[string]*Domain{}}
}

// Domains returns a copy of the tracked domains, in order.
func (d *Daemon) Domains() []Domain {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Domain, len(d.doms))
	for i, x := range d.doms {
		out[i] = *x
	}
	return out
}

// pass is one session under the global lock (caller holds mu).
type pass struct {
	d    *Daemon
	ctx  context.Context
	sess Session
}

func (d *Daemon) open(ctx context.Context) (*pass, error) {
	s, err := d.host.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the hypervisor: %w", err)
	}
	return &pass{d: d, ctx: ctx, sess: s}, nil
}

func (p *pass) close() {
	if err := p.sess.Close(); err != nil {
		p.d.log.Warn("closing the hypervisor session", "err", err)
	}
}

// refreshDomainList adds new running domains (in the order the host lists
// them), drops vanished ones and takes the guests' reported usage.
func (p *pass) refreshDomainList() error {
	facts, err := p.sess.Domains(p.ctx)
	if err != nil {
		return err
	}
	total, _, err := p.sess.HostMem(p.ctx)
	if err != nil {
		return err
	}
	d := p.d
	d.allPhysMem = int64(float64(total) * memOverheadFactor)
	seen := make(map[string]bool, len(facts))
	for _, f := range facts {
		seen[f.ID] = true
		dom := d.byID[f.ID]
		if dom == nil {
			dom = &Domain{ID: f.ID, LastTarget: f.Target}
			d.byID[f.ID] = dom
			d.doms = append(d.doms, dom)
			d.log.Info("domain added", "domid", f.ID)
		}
		dom.HasMeminfo, dom.MemUsed = f.HasMeminfo, f.MemUsed
		d.applyFacts(dom, f)
	}
	kept := d.doms[:0]
	for _, dom := range d.doms {
		if seen[dom.ID] {
			kept = append(kept, dom)
		} else {
			delete(d.byID, dom.ID)
			d.log.Info("domain removed", "domid", dom.ID)
		}
	}
	clear(d.doms[len(kept):])
	d.doms = kept
	return nil
}

func (d *Daemon) applyFacts(dom *Domain, f DomainFacts) {
	dom.MemCurrent = f.MemCurrent
	dom.MemActual = max(dom.MemCurrent, dom.LastTarget)
	dom.UseHotplug = f.UseHotplug
	if f.MemMax > 0 {
		dom.MemMax = f.MemMax
	} else {
		dom.MemMax = d.allPhysMem
	}
}

// refreshMemActual is refresh_mem_actual: current, actual and maximum
// memory of tracked domains (only the listed ones when only is not nil).
// Usage reports are left alone, as the reference reads them only on events.
func (p *pass) refreshMemActual(only map[string]int64) error {
	facts, err := p.sess.Domains(p.ctx)
	if err != nil {
		return err
	}
	for _, f := range facts {
		dom := p.d.byID[f.ID]
		if dom == nil {
			continue
		}
		if only != nil {
			if _, ok := only[f.ID]; !ok {
				continue
			}
		}
		p.d.applyFacts(dom, f)
	}
	return nil
}

// freeXenMem is get_free_xen_mem: free host memory less what was promised
// to domains that have not taken it yet.
func (p *pass) freeXenMem() (int64, error) {
	_, free, err := p.sess.HostMem(p.ctx)
	if err != nil {
		return 0, err
	}
	xenFree := int64(float64(free) * memOverheadFactor)
	var assigned int64
	for _, dom := range p.d.doms {
		assigned += max(0, dom.LastTarget-dom.MemCurrent)
	}
	if xenFree < XenFreeMemMin {
		p.d.log.Error("Xen free memory below the minimum", "free", xenFree, "min", int64(XenFreeMemMin))
	} else if xenFree < assigned+XenFreeMemMin {
		p.d.log.Error("Xen free memory below what is promised to domains", "free", xenFree, "assigned", assigned)
	}
	return xenFree - assigned, nil
}

// memSet is mem_set: remember the target and ask the hypervisor; failures
// are ignored (the domain may be dying), as in the reference.
func (p *pass) memSet(dom *Domain, val int64) {
	dom.LastTarget = val
	p.d.log.Debug("mem-set", "domid", dom.ID, "target", val)
	if err := p.sess.SetTarget(p.ctx, dom.ID, val, dom.UseHotplug); err != nil {
		p.d.log.Debug("set target failed", "domid", dom.ID, "err", err)
	}
}

func (p *pass) sleep() bool {
	t := time.NewTimer(p.d.opts.Delay)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// doBalance is do_balance: one periodic redistribution.
func (p *pass) doBalance() error {
	d := p.d
	if fi, err := os.Stat(filepath.Join(d.opts.RunDir, "do-not-membalance")); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	if err := p.refreshMemActual(nil); err != nil {
		return err
	}
	d.opts.Params.ClearOutdatedErrorMarkers(d.doms)
	xenFree, err := p.freeXenMem()
	if err != nil {
		return err
	}
	d.lastFree, d.lastFreeOK = xenFree, true
	reqs, branch, err := d.opts.Params.Balance(xenFree-XenFreeMemLeft, d.doms)
	if err != nil {
		return fmt.Errorf("balance: %w", err)
	}
	if !d.opts.Params.IsBalanceReqSignificant(reqs, xenFree, d.lookup) {
		return nil
	}
	d.log.Debug("balance", "branch", string(branch), "xenfree", xenFree, "requests", len(reqs))
	prev := make(map[string]int64, len(d.doms))
	for _, dom := range d.doms {
		prev[dom.ID] = dom.MemActual
	}
	for _, r := range reqs {
		dom := d.byID[r.ID]
		ntries := 5
		for {
			free, err := p.freeXenMem()
			if err != nil {
				return err
			}
			if float64(free-(r.Mem-dom.MemActual)) >= 0.9*XenFreeMemLeft {
				break
			}
			if !p.sleep() {
				return p.ctx.Err()
			}
			if err := p.refreshMemActual(nil); err != nil {
				return err
			}
			ntries--
			if ntries <= 0 {
				d.debugStuckBalance(dom, reqs, prev)
				free, err := p.freeXenMem()
				if err != nil {
					return err
				}
				p.memSet(dom, free+dom.MemActual-XenFreeMemLeft)
				return nil
			}
		}
		p.memSet(dom, r.Mem)
	}
	xenFree, err = p.freeXenMem()
	if err != nil {
		return err
	}
	d.lastFree, d.lastFreeOK = xenFree, true
	m := d.opts.Params.MemInfo(xenFree-XenFreeMemLeft, d.doms)
	return d.writeAvailMem(m.TotalAvailableMem)
}

func (d *Daemon) lookup(id string) *Domain { return d.byID[id] }

// debugStuckBalance marks the donors before the stuck one that kept more
// memory than asked: no_progress if they did not move at all.
func (d *Daemon) debugStuckBalance(stuck *Domain, reqs []Target, prev map[string]int64) {
	for _, r := range reqs {
		if r.ID == stuck.ID {
			break
		}
		dom := d.byID[r.ID]
		if dom.MemActual > dom.LastTarget+stuckMargin {
			if prev[dom.ID] == dom.MemActual {
				dom.NoProgress = true
				d.log.Warn("domain did not react to memory request", "domid", dom.ID, "actual", dom.MemActual, "target", dom.LastTarget)
			} else {
				dom.SlowMemsetReact = true
				d.log.Warn("domain still holds more memory than assigned", "domid", dom.ID, "actual", dom.MemActual, "target", dom.LastTarget)
			}
		}
	}
}

// writeAvailMem replaces qmemman-avail-mem atomically.
func (d *Daemon) writeAvailMem(v int64) error {
	final := filepath.Join(d.opts.RunDir, "qmemman-avail-mem")
	tmp := final + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(v, 10)), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, final)
}

// doBalloon is do_balloon: free memSize bytes (plus XEN_FREE_MEM_MIN) for a
// new domain, giving up when less than 300 MiB was gained over 30 rounds.
func (p *pass) doBalloon(memSize int64) (bool, error) {
	d := p.d
	for _, dom := range d.doms {
		dom.NoProgress = false
	}
	var ring [checkPeriod]int64
	var prev map[string]int64
	for niter := 0; ; niter++ {
		if err := p.refreshMemActual(nil); err != nil {
			return false, err
		}
		xenFree, err := p.freeXenMem()
		if err != nil {
			return false, err
		}
		d.log.Debug("balloon", "size", memSize, "xenfree", xenFree, "iteration", niter)
		if xenFree >= memSize+XenFreeMemMin {
			p.inhibitBalloonUp()
			return true, nil
		}
		slot := niter % checkPeriod
		if niter >= checkPeriod && xenFree < ring[slot]+checkDelta {
			return false, nil
		}
		ring[slot] = xenFree
		for id, v := range prev {
			if dom := d.byID[id]; dom != nil && v == dom.MemActual {
				dom.NoProgress = true
				d.log.Info("domain did not react to balloon request", "domid", id)
			}
		}
		reqs, err := d.opts.Params.Balloon(memSize+XenFreeMemLeft-xenFree, d.doms)
		if err != nil {
			return false, err
		}
		if len(reqs) == 0 {
			return false, nil
		}
		prev = make(map[string]int64, len(reqs))
		for _, r := range reqs {
			dom := d.byID[r.ID]
			p.memSet(dom, r.Mem)
			prev[r.ID] = dom.MemActual
		}
		if !p.sleep() {
			return false, p.ctx.Err()
		}
	}
}

// inhibitBalloonUp stops domains from growing back into memory just freed.
func (p *pass) inhibitBalloonUp() {
	for _, dom := range p.d.doms {
		if dom.MemActual+inhibitMargin < dom.LastTarget {
			p.d.log.Info("preventing balloon up", "domid", dom.ID, "to", dom.MemActual)
			p.memSet(dom, dom.MemActual)
		}
	}
}

// DomRequest is one id:bytes pair of a per-domain request (0: preferred).
type DomRequest struct {
	ID  string
	Mem int64
}

// UnknownDomainError is a per-domain request naming an untracked domain.
type UnknownDomainError struct{ ID string }

func (e *UnknownDomainError) Error() string { return "no tracked domain " + strconv.Quote(e.ID) }

// doBalloonDom is do_balloon_dom: bring the given domains to the given
// sizes, failing when one shrinks slower than 100 MiB/s after 3 s.
func (p *pass) doBalloonDom(req []DomRequest) (bool, error) {
	d := p.d
	if len(req) == 0 {
		return false, nil
	}
	reqMem := make(map[string]int64, len(req))
	for _, r := range req {
		dom := d.byID[r.ID]
		if dom == nil {
			return false, &UnknownDomainError{r.ID}
		}
		reqMem[r.ID] = r.Mem
		dom.NoProgress = false
	}
	target := map[string]int64{}
	done := map[string]bool{}
	for _, r := range req {
		dom := d.byID[r.ID]
		if r.Mem == 0 {
			if !dom.HasMeminfo {
				done[r.ID] = true
				continue
			}
			target[r.ID] = d.opts.Params.PrefMem(dom)
		} else {
			target[r.ID] = r.Mem
		}
	}
	ring := map[string][]int64{}
	for niter := 0; ; niter++ {
		if err := p.refreshMemActual(reqMem); err != nil {
			return false, err
		}
		for _, r := range req {
			if done[r.ID] {
				continue
			}
			dom := d.byID[r.ID]
			if niter > 0 && niter%lastSecond == 0 && r.Mem == 0 {
				target[r.ID] = d.opts.Params.PrefMem(dom)
			}
			if target[r.ID] == 0 {
				return false, arithErr("float division by zero (ZeroDivisionError in the reference): target of domain %s is 0", r.ID)
			}
			if pyRound2(float64(dom.MemActual)/float64(target[r.ID])) <= memsetSuccessRatio {
				done[r.ID] = true
			}
		}
		if len(done) == len(reqMem) {
			return true, nil
		}
		slow := false
		for _, r := range req {
			if done[r.ID] {
				continue
			}
			ring[r.ID] = append(ring[r.ID], d.byID[r.ID].MemActual)
			if niter >= checkPeriod {
				h := ring[r.ID]
				speed := int64(float64(h[len(h)-lastSecond]-h[len(h)-1]) / MiB)
				if speed < checkMBs {
					d.log.Warn("domain is slow to give memory back", "domid", r.ID, "MiB/s", speed)
					slow = true
				}
			}
		}
		if slow {
			return false, nil
		}
		for _, r := range req {
			if !done[r.ID] {
				p.memSet(d.byID[r.ID], target[r.ID])
			}
		}
		if !p.sleep() {
			return false, p.ctx.Err()
		}
	}
}

// pyRound2 is Python's round(x, 2): the exact binary value rounded to two
// decimals, ties to even (strconv rounds the same way).
func pyRound2(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 2, 64), 64)
	return v
}

// Balance runs one balancing pass: refresh the domain list and the guests'
// usage, then do_balance. It takes the global lock and a host session.
//
// While another process has the embedded driver's root or the lock beside
// it (a qvm command, which keeps them until it exits and may be about to
// ask for memory), the pass is skipped rather than wait for the root with
// the global lock held.
func (d *Daemon) Balance(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rh, ok := d.host.(RootHolder); ok && rh.RootBusy() {
		d.log.Debug("embedded root in use by another process: pass skipped")
		return nil
	}
	p, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer p.close()
	d.forceRefresh = false
	if err := p.refreshDomainList(); err != nil {
		return err
	}
	return p.doBalance()
}
