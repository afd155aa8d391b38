package memd

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
)

const mb = MiB

func dom(id string, used, max, actual int64) *Domain {
	return &Domain{ID: id, MemUsed: used, HasMeminfo: true, MemMax: max, MemActual: actual, MemCurrent: actual}
}

func noMeminfo(id string, max, actual int64) *Domain {
	return &Domain{ID: id, MemMax: max, MemActual: actual, MemCurrent: actual}
}

func lookupIn(doms []*Domain) func(string) *Domain {
	return func(id string) *Domain {
		for _, d := range doms {
			if d.ID == id {
				return d
			}
		}
		return nil
	}
}

// test_010/011/020 of the reference.
func TestPrefNeededMemVectors(t *testing.T) {
	p := DefaultParams()
	cases := []struct {
		d          *Domain
		pref, need int64
		checkNeed  bool
	}{
		{dom("0", 1024*mb, 4096*mb, 0), 1762865971, 0, false},
		{dom("0", 5000*mb, 4096*mb, 0), 4294967296, 0, false},
		{dom("10", 1024*mb, 4096*mb, 0), 1395864371, 0, false},
		{dom("10", 5000*mb, 4096*mb, 0), 4294967296, 0, false},
		{dom("10", 1024*mb, 4096*mb, 1024*mb), 1395864371, 322122547, true},
		{dom("10", 1024*mb, 4096*mb, 2024*mb), 1395864371, -726453453, true},
	}
	for i, c := range cases {
		if got := p.PrefMem(c.d); got != c.pref {
			t.Errorf("case %d: pref_mem = %d, want %d", i, got, c.pref)
		}
		if c.checkNeed {
			if got := p.NeededMem(c.d); got != c.need {
				t.Errorf("case %d: needed_mem = %d, want %d", i, got, c.need)
			}
		}
	}
}

func TestPrefMemFloorBeatsCap(t *testing.T) {
	p := DefaultParams()
	if got := p.PrefMem(dom("3", 10*mb, 100*mb, 0)); got != DefaultMinPrefMem {
		t.Errorf("pref_mem = %d, want the floor %d above mem_max", got, DefaultMinPrefMem)
	}
	// dom0 has no floor.
	if got := p.PrefMem(dom("0", 0, 100*mb, 0)); got != 100*mb {
		t.Errorf("dom0 pref_mem = %d, want mem_max %d", got, 100*mb)
	}
}

func balloonDomains() []*Domain {
	return []*Domain{
		dom("0", 1024*mb, 4096*mb, 1736*mb),
		dom("1", 1024*mb, 4096*mb, 1536*mb),
		dom("2", 4096*mb, 4096*mb, 4096*mb),
		noMeminfo("3", 4096*mb, 4096*mb),
	}
}

// test_100_balloon.
func TestBalloonVector(t *testing.T) {
	p := DefaultParams()
	doms := balloonDomains()
	wantNeed := []int64{-57461965, -214748365, 0}
	for i, w := range wantNeed {
		if got := p.NeededMem(doms[i]); got != w {
			t.Errorf("need(%s) = %d, want %d", doms[i].ID, got, w)
		}
	}
	got, err := p.Balloon(400*mb, doms)
	if err != nil || len(got) != 0 {
		t.Fatalf("balloon(400 MB) = %v, %v; want []", got, err)
	}
	doms[1].MemUsed = 512 * mb
	if pr, n := p.PrefMem(doms[1]), p.NeededMem(doms[1]); pr != 697932185 || n != -912680551 {
		t.Errorf("after used=512MB: pref %d need %d", pr, n)
	}
	got, err = p.Balloon(400*mb, doms)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{"0", 1794242737}, {"1", 1196296014}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("balloon(400 MB) = %v, want %v", got, want)
	}
	var released int64
	for _, r := range got {
		released += lookupIn(doms)(r.ID).MemCurrent - r.Mem
	}
	if released != 440401921 || released < 400*mb || released > 421*mb {
		t.Errorf("released %d, want 440401921", released)
	}
}

func enoughDomains() []*Domain {
	return []*Domain{
		dom("0", 1024*mb, 4096*mb, 1736*mb),
		dom("1", 1024*mb, 4096*mb, 1536*mb),
		dom("2", 4096*mb, 4096*mb, 4096*mb),
		noMeminfo("3", 4096*mb, 4096*mb),
		dom("4", 1536*mb, 4096*mb, 1536*mb),
		dom("5", 512*mb, 1024*mb, 768*mb),
	}
}

// test_200_balance_when_enough_mem.
func TestBalanceWhenEnoughMemVector(t *testing.T) {
	p := DefaultParams()
	doms := enoughDomains()
	var totalPref int64
	for _, d := range doms {
		if d.HasMeminfo {
			totalPref += p.PrefMem(d)
		}
	}
	if totalPref != 10245426379 {
		t.Fatalf("total_pref = %d", totalPref)
	}
	got, err := p.BalanceWhenEnoughMem(doms, 0, totalPref, 4096*mb)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{"0", 3068708976}, {"1", 2548378128}, {"2", 4294967296}, {"4", 3537898734}, {"5", 1073741824}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	var sum int64
	for _, r := range got {
		sum += r.Mem - lookupIn(doms)(r.ID).MemActual
	}
	if float64(sum) >= 4096*mb*1.05 {
		t.Errorf("total change %d too large", sum)
	}
}

// test_250_balance_when_low_on_mem.
func TestBalanceWhenLowOnMemVector(t *testing.T) {
	p := DefaultParams()
	doms := enoughDomains()
	doms[0].MemActual, doms[0].MemCurrent = 768*mb, 768*mb
	m := p.MemInfo(50*mb, doms)
	want := MemInfo{TotalAvailableMem: -1066192075, XenFreeMem: 50 * mb, TotalMemPref: 10245426379,
		TotalMemPrefAcceptors: 3856662527, Donors: []string{"1", "2", "5"}, Acceptors: []string{"0", "4"}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("mem_info = %+v\nwant %+v", m, want)
	}
	got, br, err := p.Balance(50*mb, doms)
	if err != nil || br != BranchLow {
		t.Fatalf("branch %s err %v", br, err)
	}
	wantT := []Target{{"1", 1395864371}, {"5", 697932185}}
	if !reflect.DeepEqual(got, wantT) {
		t.Fatalf("got %v, want %v", got, wantT)
	}
	for _, r := range got {
		d := lookupIn(doms)(r.ID)
		if d.MemUsed > d.MemActual && r.Mem < d.MemActual || d.MemUsed <= d.MemActual && r.Mem >= d.MemActual {
			t.Errorf("%s: target %d in the wrong direction", r.ID, r.Mem)
		}
	}
}

// Section 9.2: low on memory with acceptors.
func TestBalanceLowWithAcceptorsVector(t *testing.T) {
	p := DefaultParams()
	doms := []*Domain{
		dom("0", 800*mb, 8192*mb, 1000*mb),
		dom("7", 1000*mb, 4000*mb, 1000*mb),
		dom("8", 300*mb, 4000*mb, 500*mb),
		dom("9", 2000*mb, 4000*mb, 2000*mb),
	}
	wantPref := []int64{1457520640, 1363148800, 408944640, 2726297600}
	wantNeed := []int64{408944640, 314572800, -115343360, 629145600}
	for i, d := range doms {
		if p.PrefMem(d) != wantPref[i] || p.NeededMem(d) != wantNeed[i] {
			t.Errorf("%s: pref %d need %d", d.ID, p.PrefMem(d), p.NeededMem(d))
		}
	}
	m := p.MemInfo(200*mb, doms)
	wantM := MemInfo{TotalAvailableMem: -1027604480, XenFreeMem: 200 * mb, TotalMemPref: 5955911680,
		TotalMemPrefAcceptors: 5546967040, Donors: []string{"8"}, Acceptors: []string{"0", "7", "9"}}
	if !reflect.DeepEqual(m, wantM) {
		t.Fatalf("mem_info = %+v", m)
	}
	got, br, err := p.Balance(200*mb, doms)
	want := []Target{{"8", 408944640}, {"0", 1072299764}, {"7", 1070695799}, {"9", 2141391599}}
	if err != nil || br != BranchLow || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v %s %v, want %v", got, br, err, want)
	}
}

// Section 9.2: enough memory, one donor below.
func TestBalanceEnoughWithDonorVector(t *testing.T) {
	p := DefaultParams()
	doms := []*Domain{dom("0", 1000*mb, 4000*mb, 2000*mb), dom("5", 100*mb, 2000*mb, 400*mb)}
	if p.PrefMem(doms[0]) != 1730150400 || p.NeededMem(doms[0]) != -367001600 ||
		p.PrefMem(doms[1]) != 209715200 || p.NeededMem(doms[1]) != -209715200 {
		t.Fatal("pref/need differ from the vector")
	}
	if m := p.MemInfo(1000*mb, doms); m.TotalAvailableMem != 1625292800 {
		t.Fatalf("total_available %d", m.TotalAvailableMem)
	}
	got, br, err := p.Balance(1000*mb, doms)
	want := []Target{{"5", 385037107}, {"0", 3176556134}}
	if err != nil || br != BranchEnough || !reflect.DeepEqual(got, want) {
		t.Fatalf("balance = %v %s %v, want %v", got, br, err, want)
	}
	got, err = p.Balloon(300*mb, doms)
	want = []Target{{"0", 1886960174}, {"5", 299320785}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("balloon = %v %v, want %v", got, err, want)
	}
}

// Section 9.2: is_balance_req_significant.
func TestSignificanceVectors(t *testing.T) {
	p := DefaultParams()
	cases := []struct {
		xenfree int64
		target  int64
		sig     bool
	}{
		{40 * mb, 1456063119, false},
		{30 * mb, 1445587845, true},
		{60 * mb, 1477013667, false},
		{120 * mb, 1539865313, false},
		{300 * mb, 1728420249, true},
	}
	for _, c := range cases {
		d := dom("1", 1000*mb, 4000*mb, 1400*mb)
		d.LastTarget = 1400 * mb
		doms := []*Domain{d}
		got, _, err := p.Balance(c.xenfree-XenFreeMemLeft, doms)
		if err != nil || !reflect.DeepEqual(got, []Target{{"1", c.target}}) {
			t.Errorf("xenfree %d: balance = %v %v, want %d", c.xenfree, got, err, c.target)
		}
		if s := p.IsBalanceReqSignificant(got, c.xenfree, lookupIn(doms)); s != c.sig {
			t.Errorf("xenfree %d: significant = %v, want %v", c.xenfree, s, c.sig)
		}
	}
	d0 := dom("0", 1024*mb, 4096*mb, 1736*mb)
	d0.LastTarget = d0.MemActual
	d1 := dom("1", 1024*mb, 4096*mb, 1536*mb)
	d1.LastTarget = d1.MemActual
	doms := []*Domain{d0, d1}
	got, _, err := p.Balance(1000*mb-XenFreeMemLeft, doms)
	want := []Target{{"0", 2468256974}, {"1", 1954403809}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("balance = %v %v, want %v", got, err, want)
	}
	if !p.IsBalanceReqSignificant(got, 1000*mb, lookupIn(doms)) {
		t.Error("want significant")
	}
}

// The under-preference rule: a domain below its preference that would
// gain more than 15 MiB is significant on its own.
func TestSignificantUnderPref(t *testing.T) {
	p := DefaultParams()
	d := dom("4", 1000*mb, 4000*mb, 1000*mb)
	d.LastTarget = 1000 * mb // below pref 1300 MiB
	doms := []*Domain{d}
	if !p.IsBalanceReqSignificant([]Target{{"4", 1016 * mb}}, XenFreeMemLeft, lookupIn(doms)) {
		t.Error("16 MiB gain under pref: want significant")
	}
	if p.IsBalanceReqSignificant([]Target{{"4", 1015 * mb}}, XenFreeMemLeft, lookupIn(doms)) {
		t.Error("exactly 15 MiB: want not significant")
	}
	d.LastTarget = 0 // never set: the rule does not apply
	if p.IsBalanceReqSignificant([]Target{{"4", 100 * mb}}, XenFreeMemLeft, lookupIn(doms)) {
		t.Error("last_target 0, 100 MiB: want not significant")
	}
}

func TestMeminfoVectors(t *testing.T) {
	if v, ok := ParseMeminfo([]byte("4096")); !ok || v != 4194304 {
		t.Errorf("4096 -> %d %v", v, ok)
	}
	for _, bad := range []string{"", "a4096", "4096a", "4096 1024", "4096\n1024", "-1", "+1", " 1"} {
		if _, ok := ParseMeminfo([]byte(bad)); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestClearOutdatedErrorMarkers(t *testing.T) {
	p := DefaultParams()
	follow := dom("1", 1000*mb, 4000*mb, 1400*mb) // pref 1300 MiB
	follow.LastTarget = 1400*mb - 25*mb           // within the 25 MiB margin
	stuck := dom("2", 1000*mb, 4000*mb, 1400*mb)
	stuck.LastTarget = 1300 * mb // 100 MiB above its target and above pref
	under := dom("3", 1000*mb, 4000*mb, 1200*mb)
	under.LastTarget = 1000 * mb // above its target but below pref
	nomi := noMeminfo("4", 4000*mb, 1400*mb)
	doms := []*Domain{follow, stuck, under, nomi}
	for _, d := range doms {
		d.NoProgress, d.SlowMemsetReact = true, true
	}
	p.ClearOutdatedErrorMarkers(doms)
	for _, c := range []struct {
		d    *Domain
		kept bool
	}{{follow, false}, {stuck, true}, {under, false}, {nomi, true}} {
		if c.d.NoProgress != c.kept || c.d.SlowMemsetReact != c.kept {
			t.Errorf("%s: flags %v/%v, want %v", c.d.ID, c.d.NoProgress, c.d.SlowMemsetReact, c.kept)
		}
	}
}

func TestNoProgressAndNoMeminfoExcluded(t *testing.T) {
	p := DefaultParams()
	a := dom("1", 100*mb, 4000*mb, 2000*mb)
	b := dom("2", 100*mb, 4000*mb, 2000*mb)
	b.NoProgress = true
	c := noMeminfo("3", 4000*mb, 2000*mb)
	doms := []*Domain{a, b, c}
	for _, f := range []func() ([]Target, error){
		func() ([]Target, error) { return p.Balloon(100*mb, doms) },
		func() ([]Target, error) { t, _, err := p.Balance(1000*mb, doms); return t, err },
		func() ([]Target, error) { t, _, err := p.Balance(-1000*mb, doms); return t, err },
	} {
		got, err := f()
		if err != nil || len(got) != 1 || got[0].ID != "1" {
			t.Errorf("got %v %v, want only domain 1", got, err)
		}
	}
	if m := p.MemInfo(0, doms); len(m.Donors)+len(m.Acceptors) != 1 {
		t.Errorf("mem_info counts excluded domains: %+v", m)
	}
}

func TestArithmeticErrors(t *testing.T) {
	p := DefaultParams()
	if _, err := p.Balloon(0, nil); !errors.Is(err, ErrArithmetic) {
		t.Errorf("balloon(0) with no donors: err %v, want ErrArithmetic", err)
	}
	if got, err := p.Balloon(1, nil); err != nil || len(got) != 0 {
		t.Errorf("balloon(1) with no donors: %v %v, want []", got, err)
	}
	z := Params{MinPrefMem: 0, CacheFactor: 1.3}
	doms := []*Domain{dom("1", 0, 4000*mb, 100*mb)}
	if _, br, err := z.Balance(1000*mb, doms); !errors.Is(err, ErrArithmetic) || br != BranchEnough {
		t.Errorf("total_pref 0: %s %v", br, err)
	}
	// No eligible domains: nothing to divide, empty results.
	if got, _, err := p.Balance(1000*mb, nil); err != nil || len(got) != 0 {
		t.Errorf("no domains: %v %v", got, err)
	}
}

// Property tests of the invariants of spec section 9: no domid twice,
// targets within [0, mem_max] (where pref_mem does not exceed mem_max),
// total change bounded, balloon frees at least what was asked.
func TestBalanceProperties(t *testing.T) {
	p := DefaultParams()
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 3000; iter++ {
		n := 1 + r.IntN(12)
		var doms []*Domain
		for i := 0; i < n; i++ {
			max := int64(256+r.IntN(16000)) * mb
			d := &Domain{ID: strconv.Itoa(i), MemMax: max}
			d.MemActual = int64(r.Float64() * float64(max))
			d.MemCurrent = d.MemActual
			d.MemUsed = int64(r.Float64() * float64(d.MemActual))
			d.HasMeminfo = r.IntN(8) != 0
			d.NoProgress = r.IntN(10) == 0
			d.LastTarget = d.MemActual
			doms = append(doms, d)
		}
		xenFree := int64(r.IntN(20000)-4000) * mb
		got, br, err := p.Balance(xenFree, doms)
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		seen := map[string]bool{}
		var change int64
		lk := lookupIn(doms)
		for _, tg := range got {
			if seen[tg.ID] {
				t.Fatalf("iter %d: %s twice in %v", iter, tg.ID, got)
			}
			seen[tg.ID] = true
			d := lk(tg.ID)
			if !d.eligible() {
				t.Fatalf("iter %d: ineligible %s in result", iter, tg.ID)
			}
			if tg.Mem < 0 || (tg.Mem > d.MemMax && p.PrefMem(d) <= d.MemMax) {
				t.Fatalf("iter %d: %s target %d outside [0, %d]", iter, tg.ID, tg.Mem, d.MemMax)
			}
			change += tg.Mem - d.MemActual
		}
		if br == BranchEnough {
			// Never more than the free memory handed out (0.999 of it when
			// negative), give or take one byte of truncation per domain.
			if float64(change) > math.Max(float64(xenFree), 0.999*float64(xenFree))+float64(n) {
				t.Fatalf("iter %d: total change %d exceeds free %d", iter, change, xenFree)
			}
			// Donors come first.
			donorPhase := true
			for _, tg := range got {
				isDonor := tg.Mem < lk(tg.ID).MemActual
				if isDonor && !donorPhase {
					t.Fatalf("iter %d: donor after acceptor in %v", iter, got)
				}
				donorPhase = donorPhase && isDonor
			}
		} else if change > max(xenFree, 0) {
			t.Fatalf("iter %d: low branch grows by %d > free %d", iter, change, xenFree)
		}
		size := int64(r.IntN(4000)+1) * mb
		bl, err := p.Balloon(size, doms)
		if err != nil {
			t.Fatalf("iter %d: balloon: %v", iter, err)
		}
		var freed int64
		for _, tg := range bl {
			d := lk(tg.ID)
			if tg.Mem > d.MemActual || tg.Mem < 0 {
				t.Fatalf("iter %d: balloon target %d of %s outside [0, actual %d]", iter, tg.Mem, tg.ID, d.MemActual)
			}
			freed += d.MemActual - tg.Mem
		}
		if len(bl) > 0 && (freed < size || float64(freed) > float64(size)*1.05+float64(len(bl))) {
			t.Fatalf("iter %d: balloon freed %d for %d", iter, freed, size)
		}
	}
}
