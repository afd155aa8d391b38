package virt

import (
	"strconv"
	"testing"
)

// The table of spec/start.md §3.
func TestMemRequestVectors(t *testing.T) {
	cases := []struct {
		mode                  string
		memory, maxmem, vcpus int
		feature, value        string
		stubdomMem            int
		want                  int64
	}{
		{"pvh", 400, 4000, 2, "", "", 0, 459538432},
		{"pvh", 400, 0, 2, "", "", 0, 430047232},
		{"pv", 400, 4000, 2, "", "", 0, 426770432},
		{"hvm", 400, 0, 2, "linux-stubdom", "1", 0, 581042176},
		{"hvm", 400, 4000, 2, "linux-stubdom", "", 0, 505675776},
		{"hvm", 400, 0, 2, "", "", 64, 513933312},
		{"pvh", 4096, 8192, 4, "", "", 0, 4372561920},
		{"hvm", 2048, 0, 1, "", "", 0, 2321022976},
	}
	for _, c := range cases {
		a, _ := loadTestApp(t, false)
		d, _ := a.Domain("test-inst-vm")
		set(t, a, d, "virt_mode", c.mode, "memory", strconv.Itoa(c.memory), "maxmem", strconv.Itoa(c.maxmem), "vcpus", strconv.Itoa(c.vcpus))
		if c.stubdomMem > 0 {
			set(t, a, d, "stubdom_mem", strconv.Itoa(c.stubdomMem))
		}
		if c.feature != "" {
			if err := a.SetFeature(d, c.feature, c.value); err != nil {
				t.Fatal(err)
			}
		}
		if got := MemRequest(a, d); got != c.want {
			t.Errorf("%+v: %d, want %d", c, got, c.want)
		}
	}
}
