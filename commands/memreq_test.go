package commands

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/memd"
)

// The table of spec/start.md §3, from a qube's properties and features
// through memd's request size.
func TestMemRequestVectors(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "vm-kernels", "k"), 0o755)
	os.WriteFile(filepath.Join(dir, "vm-kernels", "k", "vmlinuz"), nil, 0o644)
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
		a := core.NewInitial(dir, core.Host{Xen: true, MemMiB: 16000, CPUs: 4}, false)
		d, err := a.Create(core.CreateOpts{Class: "StandaloneVM", Name: "q", Label: "red"})
		if err != nil {
			t.Fatal(err)
		}
		set := func(kv ...string) {
			for i := 0; i < len(kv); i += 2 {
				if err := a.Set(d, kv[i], kv[i+1]); err != nil {
					t.Fatal(err)
				}
			}
		}
		set("virt_mode", c.mode, "memory", strconv.Itoa(c.memory), "maxmem", strconv.Itoa(c.maxmem), "vcpus", strconv.Itoa(c.vcpus))
		if c.stubdomMem > 0 {
			set("stubdom_mem", strconv.Itoa(c.stubdomMem))
		}
		if c.feature != "" {
			if err := a.SetFeature(d, c.feature, c.value); err != nil {
				t.Fatal(err)
			}
		}
		if got := memd.RequestSize(memStartRequest(a, d)); got != c.want {
			t.Errorf("%+v: %d, want %d", c, got, c.want)
		}
	}
}
