package virt

import (
	"github.com/qvm-dev/qvm/core"
)

// MemRequest is the byte count qvm asks qmemmand to free before a qube
// starts (spec/start.md §3): memory plus the HVM stub domain and video RAM,
// a fixed and a per-vCPU overhead, and two pages per MiB of maxmem for the
// paging structures of non-PV qubes. Float arithmetic truncated, as the
// reference sends it.
func MemRequest(a *core.App, d *core.Domain) int64 {
	const mib = 1024 * 1024
	mode := get(a, d, "virt_mode").S
	memory := get(a, d, "memory").Int()
	maxmem := get(a, d, "maxmem").Int()
	vcpus := get(a, d, "vcpus").Int()
	var stub int64
	if mode == "hvm" {
		if sm := get(a, d, "stubdom_mem"); !sm.None && sm.S != "" {
			stub = sm.Int()
		} else if v, ok := a.FeatureWithTemplate(d, "linux-stubdom"); !ok || truthy(v, ok) {
			stub = 128
		} else {
			stub = 28
		}
		stub += 16
	}
	total := float64((memory+stub)*mib) + 4*mib + float64(vcpus)*1.5*mib
	mm := maxmem
	if mm == 0 {
		mm = memory
	}
	if mode != "pv" {
		total += float64(mm * 8192)
	}
	return int64(total)
}
