package memd

import (
	"errors"
	"fmt"
	"math"
)

// Sizes used by the algorithm, in bytes (spec qmemman.md section 3).
const (
	MiB = 1 << 20

	XenFreeMemLeft                    = 50 * MiB
	XenFreeMemMin                     = 25 * MiB
	MinTotalMemoryTransfer            = 150 * MiB
	MinMemChangeWhenUnderPref         = 15 * MiB
	lowDonorCutoff                    = 10 * MiB
	reqSafetyNetFactor                = 1.05
	roundingFactor                    = 0.999
	DefaultMinPrefMem                 = 200 * MiB
	DefaultDom0MemBoost               = 350 * MiB
	DefaultCacheFactor                = 1.3
	dom0ID                            = "0"
	maxExactInt                       = 1 << 53
	xenstoreTargetMarginKiB           = 16 * 1024
	inhibitMargin                     = 204800
	checkPeriod                       = 30
	checkDelta                        = 3 * 100 * MiB
	lastSecond                        = 10
	checkMBs                          = 100
	memsetSuccessRatio                = 1.1
	clearMarkersMargin                = XenFreeMemLeft / 2
	stuckMargin                       = XenFreeMemLeft / 4
	memOverheadFactor         float64 = 1 / 1.00781
)

// Params are the tunables of qmemman.conf.
type Params struct {
	MinPrefMem   int64   // vm-min-mem
	Dom0MemBoost int64   // dom0-mem-boost
	CacheFactor  float64 // cache-margin-factor
}

// DefaultParams are the reference's built-in values (used when the config
// file has no [global] section).
func DefaultParams() Params {
	return Params{MinPrefMem: DefaultMinPrefMem, Dom0MemBoost: DefaultDom0MemBoost, CacheFactor: DefaultCacheFactor}
}

// Domain is the per-domain record the algorithm reads (the reference's
// DomainState). All sizes are bytes.
type Domain struct {
	ID         string
	MemCurrent int64
	MemActual  int64
	MemMax     int64
	// HasMeminfo is false when the guest reported no (or invalid) usage; such
	// a domain takes no part in balancing.
	HasMeminfo      bool
	MemUsed         int64
	LastTarget      int64
	UseHotplug      bool
	NoProgress      bool
	SlowMemsetReact bool
}

// eligible reports whether d takes part in balloon, mem_info and balance.
func (d *Domain) eligible() bool { return d.HasMeminfo && !d.NoProgress }

// Target is one (domain, new memory size) pair of a result list.
type Target struct {
	ID  string
	Mem int64
}

// ErrArithmetic matches every ArithmeticError.
var ErrArithmetic = errors.New("arithmetic error")

// ArithmeticError is where the reference raises ZeroDivisionError,
// OverflowError or ValueError from its float arithmetic.
type ArithmeticError struct{ Msg string }

func (e *ArithmeticError) Error() string        { return e.Msg }
func (e *ArithmeticError) Is(target error) bool { return target == ErrArithmetic }

func arithErr(format string, a ...any) error {
	return &ArithmeticError{fmt.Sprintf(format, a...)}
}

// trunc is Python's int() on a float: toward zero, and an error where
// Python would raise (NaN, infinity) or where the value leaves int64.
func trunc(f float64) (int64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, arithErr("cannot convert float %v to integer (the reference raises)", f)
	}
	if f >= 9.223372036854775807e18 || f < -9.223372036854775808e18 {
		return 0, arithErr("%v does not fit in 64 bits", f)
	}
	return int64(f), nil
}

// Float steps below are written one IEEE operation at a time: the explicit
// float64() conversions stop the compiler from fusing a multiply and an add
// (allowed by the Go spec, done on arm64), which would change the last bit
// and so the truncated result compared with the reference.

// PrefMem is the memory a domain should have: what it uses times the cache
// factor, at least MinPrefMem (domUs) or plus Dom0MemBoost (dom0), capped at
// mem_max (a domU's floor wins over its cap, as in the reference).
func (p Params) PrefMem(d *Domain) int64 {
	x := float64(float64(d.MemUsed) * p.CacheFactor)
	if d.ID == dom0ID {
		x = x + float64(p.Dom0MemBoost)
		v, err := trunc(math.Min(x, float64(d.MemMax)))
		if err != nil {
			return saturate(x)
		}
		return v
	}
	v := math.Min(x, float64(d.MemMax))
	if float64(p.MinPrefMem) > v {
		return p.MinPrefMem
	}
	r, err := trunc(v)
	if err != nil {
		return saturate(v)
	}
	return r
}

// saturate only matters for inputs outside what Validate accepts.
func saturate(f float64) int64 {
	if f > 0 {
		return math.MaxInt64
	}
	return math.MinInt64
}

// NeededMem is pref_mem − mem_actual; negative means the domain has surplus.
func (p Params) NeededMem(d *Domain) int64 { return p.PrefMem(d) - d.MemActual }

// MemInfo is the summary mem_info computes.
type MemInfo struct {
	TotalAvailableMem     int64
	XenFreeMem            int64
	TotalMemPref          int64
	TotalMemPrefAcceptors int64
	Donors                []string
	Acceptors             []string
}

// MemInfo classifies the eligible domains into donors and acceptors.
func (p Params) MemInfo(xenFree int64, doms []*Domain) MemInfo {
	m := MemInfo{XenFreeMem: xenFree, Donors: []string{}, Acceptors: []string{}}
	var totalNeeded int64
	for _, d := range doms {
		if !d.eligible() {
			continue
		}
		need := p.NeededMem(d)
		pref := p.PrefMem(d)
		if need < 0 || d.MemActual >= d.MemMax {
			m.Donors = append(m.Donors, d.ID)
		} else {
			m.Acceptors = append(m.Acceptors, d.ID)
			m.TotalMemPrefAcceptors += pref
		}
		totalNeeded += need
		m.TotalMemPref += pref
	}
	m.TotalAvailableMem = xenFree - totalNeeded
	return m
}

// Branch names which half of balance ran.
type Branch string

const (
	BranchEnough Branch = "balance_when_enough_mem"
	BranchLow    Branch = "balance_when_low_on_mem"
)

// Balance computes new targets for all eligible domains given xenFree
// bytes to hand out (already less the reserve). The branch is returned
// even when the arithmetic fails.
func (p Params) Balance(xenFree int64, doms []*Domain) ([]Target, Branch, error) {
	m := p.MemInfo(xenFree, doms)
	if m.TotalAvailableMem > 0 {
		t, err := p.BalanceWhenEnoughMem(doms, xenFree, m.TotalMemPref, m.TotalAvailableMem)
		return t, BranchEnough, err
	}
	t, err := p.BalanceWhenLowOnMem(doms, xenFree, m.TotalMemPrefAcceptors, m.Donors, m.Acceptors)
	return t, BranchLow, err
}

// BalanceWhenEnoughMem shares totalAvailable between the eligible domains in
// proportion to their preferred memory, redistributing what mem_max caps
// leave over; donors (target below mem_actual) come first in the result.
func (p Params) BalanceWhenEnoughMem(doms []*Domain, _ int64, totalPref, totalAvailable int64) ([]Target, error) {
	type slot struct {
		d *Domain
		t int64
	}
	var targets []slot
	var memLeft int64
	var acc int64
	for _, d := range doms {
		if !d.eligible() {
			continue
		}
		if totalPref == 0 {
			return nil, arithErr("float division by zero (ZeroDivisionError in the reference): total preferred memory is 0")
		}
		pref := p.PrefMem(d)
		scale := float64(float64(pref) / float64(totalPref))
		nonint := float64(pref) + float64(scale*float64(totalAvailable))
		t, err := trunc(roundingFactor * nonint)
		if err != nil {
			return nil, err
		}
		if t > d.MemMax {
			memLeft += t - d.MemMax
			t = d.MemMax
		} else {
			acc++
		}
		targets = append(targets, slot{d, t})
	}
	for memLeft > 0 && acc > 0 {
		var newLeft int64
		newAcc := acc
		for i := range targets {
			s := &targets[i]
			if s.t < s.d.MemMax {
				bonus, err := trunc(roundingFactor * float64(float64(memLeft)/float64(acc)))
				if err != nil {
					return nil, err
				}
				if s.t+bonus >= s.d.MemMax {
					newLeft += s.t + bonus - s.d.MemMax
					s.t = s.d.MemMax
					newAcc--
				} else {
					s.t += bonus
				}
			}
		}
		memLeft = newLeft
		acc = newAcc
	}
	donors := []Target{}
	var acceptors []Target
	for _, s := range targets {
		if s.t < s.d.MemActual {
			donors = append(donors, Target{s.d.ID, s.t})
		} else {
			acceptors = append(acceptors, Target{s.d.ID, s.t})
		}
	}
	return append(donors, acceptors...), nil
}

// BalanceWhenLowOnMem takes donors with at least 10 MiB of surplus down to
// their preferred memory and, if that leaves anything, gives acceptors a
// share of it. squeezed is reduced by the donors' surplus, exactly as the
// reference does.
func (p Params) BalanceWhenLowOnMem(doms []*Domain, xenFree int64, totalPrefAcceptors int64, donors, acceptors []string) ([]Target, error) {
	byID := make(map[string]*Domain, len(doms))
	for _, d := range doms {
		byID[d.ID] = d
	}
	out := []Target{}
	squeezed := xenFree
	for _, id := range donors {
		d := byID[id]
		avail := -p.NeededMem(d)
		if avail < lowDonorCutoff {
			continue
		}
		squeezed -= avail
		out = append(out, Target{id, p.PrefMem(d)})
	}
	if squeezed < 0 {
		return out, nil
	}
	for _, id := range acceptors {
		d := byID[id]
		if totalPrefAcceptors == 0 {
			return nil, arithErr("float division by zero (ZeroDivisionError in the reference): total preferred memory of acceptors is 0")
		}
		scale := float64(float64(p.PrefMem(d)) / float64(totalPrefAcceptors))
		t, err := trunc(roundingFactor * (float64(d.MemActual) + float64(scale*float64(squeezed))))
		if err != nil {
			return nil, err
		}
		out = append(out, Target{id, min(t, d.MemMax)})
	}
	return out, nil
}

// Balloon returns targets for the donors that together free memSize bytes
// (5% over-asked), or an empty list when they cannot.
func (p Params) Balloon(memSize int64, doms []*Domain) ([]Target, error) {
	type donor struct {
		d       *Domain
		surplus int64
	}
	var donors []donor
	var available int64
	for _, d := range doms {
		if !d.eligible() {
			continue
		}
		if need := p.NeededMem(d); need < 0 {
			donors = append(donors, donor{d, -need})
			available -= need
		}
	}
	if available < memSize {
		return []Target{}, nil
	}
	if available == 0 {
		return nil, arithErr("float division by zero (ZeroDivisionError in the reference): no domain can donate memory")
	}
	scale := float64(float64(memSize) / float64(available))
	out := make([]Target, 0, len(donors))
	for _, dn := range donors {
		borrowed := float64(float64(float64(dn.surplus)*scale) * reqSafetyNetFactor)
		t, err := trunc(float64(dn.d.MemActual) - borrowed)
		if err != nil {
			return nil, err
		}
		out = append(out, Target{dn.d.ID, t})
	}
	return out, nil
}

// IsBalanceReqSignificant says whether a balance result is worth applying:
// Xen free memory under 35 MiB, a domain under its preference gaining more
// than 15 MiB, or more than 150 MiB moved in total. lookup finds each
// target's domain (every id in reqs must be known).
func (p Params) IsBalanceReqSignificant(reqs []Target, xenFree int64, lookup func(id string) *Domain) bool {
	if XenFreeMemLeft-xenFree > MinMemChangeWhenUnderPref {
		return true
	}
	var total int64
	for _, r := range reqs {
		d := lookup(r.ID)
		change := r.Mem - d.LastTarget
		total += abs(change)
		if 0 < d.LastTarget && d.LastTarget < p.PrefMem(d) && change > MinMemChangeWhenUnderPref {
			return true
		}
	}
	return total+abs(xenFree-XenFreeMemLeft) > MinTotalMemoryTransfer
}

// ClearOutdatedErrorMarkers forgets no_progress and slow_memset_react for
// domains that now follow their target or are below their preference.
func (p Params) ClearOutdatedErrorMarkers(doms []*Domain) {
	for _, d := range doms {
		if !d.HasMeminfo {
			continue
		}
		if d.MemActual <= d.LastTarget+clearMarkersMargin || d.MemActual < p.PrefMem(d) {
			d.SlowMemsetReact = false
			d.NoProgress = false
		}
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// ParseMeminfo reads the guest's memory/meminfo value (decimal KiB of used
// memory). ok is false unless it is non-empty ASCII digits only.
func ParseMeminfo(raw []byte) (used int64, ok bool) {
	if len(raw) == 0 || len(raw) > 15 {
		// More than 15 digits of KiB would not fit the exact range; the
		// reference would accept it, no guest reports that much.
		return 0, false
	}
	var v int64
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v * 1024, true
}
