package memd

import (
	"context"
	"os"
	"strconv"
	"testing"
)

func benchHostDomains(n int) *simHost {
	h := &simHost{total: 400 << 30}
	for i := 0; i < n; i++ {
		max := int64(1000+37*i%3000) * MiB
		actual := max * int64(30+i%60) / 100
		h.add(strconv.Itoa(i+1), actual, max, actual*int64(40+i%50)/100)
	}
	return h
}

// BenchmarkPass100 is one first balancing pass over 100 domains.
func BenchmarkPass100(b *testing.B) {
	h := benchHostDomains(100)
	orig := make([]int64, len(h.doms))
	for i, d := range h.doms {
		orig[i] = d.facts.MemCurrent
	}
	dir := b.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "memd-bench-"); err == nil {
		dir = shm // /var/run is a tmpfs
		defer os.RemoveAll(shm)
	}
	for b.Loop() {
		for i, d := range h.doms {
			d.facts.MemCurrent = orig[i]
		}
		h.sets = h.sets[:0]
		d := NewDaemon(h, Options{Params: DefaultParams(), RunDir: dir})
		if err := d.Balance(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
