package core

import "sort"

// Finding is one problem `qvm check` reports.
type Finding struct {
	Kind string `json:"kind"` // "inconsistent" or "orphan"
	What string `json:"what"` // the qube or file concerned
	Msg  string `json:"message"`
}

// Inconsistencies lists what a loadable qubes.xml can still get wrong:
// references that the reference only checks when a user sets them.
func (a *App) Inconsistencies() []Finding {
	var out []Finding
	add := func(what, format string, args ...any) {
		out = append(out, Finding{Kind: "inconsistent", What: what, Msg: sprintf(format, args...)})
	}
	vids := map[string]string{}
	for _, d := range a.Domains() {
		if !d.IsQubesVM() {
			continue
		}
		name := d.Name()
		if n := a.netvmOf(d); n != nil {
			if pn, _ := a.Get(n, "provides_network"); !pn.Bool() {
				add(name, "netvm %s does not provide network", n.Name())
			}
			if n == d || a.reaches(d, n) {
				add(name, "netvm %s makes a network loop", n.Name())
			}
		}
		if d.Class == "DispVM" {
			if t := a.template(d); t != nil && !a.templateForDispvms(t) {
				add(name, "template %s is not a disposable template (template_for_dispvms is False)", t.Name())
			}
		}
		if k, err := a.Get(d, "kernel"); err == nil && k.S != "" && a.checkKernel(k.S) != nil {
			add(name, "kernel %s is not installed in %s", k.S, a.kernelDir(k.S))
		}
		for _, v := range d.Volumes {
			if p := a.Pool(v.Pool); p != nil && p.Driver == "linux-kernel" {
				continue
			}
			key := v.Pool + ":" + v.Vid
			if other, dup := vids[key]; dup {
				add(name, "volume %s (%s) is also used by %s", v.Name, key, other)
			}
			vids[key] = name + ":" + v.Name
			if v.SnapOnStart && v.Source != "" && !a.hasVolume(v.Pool, v.Source) {
				add(name, "volume %s snapshots %s:%s, which no qube has", v.Name, v.Pool, v.Source)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].What < out[j].What })
	return out
}

func (a *App) hasVolume(pool, vid string) bool {
	for _, d := range a.domains {
		for _, v := range d.Volumes {
			if v.Pool == pool && v.Vid == vid {
				return true
			}
		}
	}
	return false
}
