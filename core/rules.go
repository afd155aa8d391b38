package core

import "strings"

// connectedVMs: qubes whose effective netvm is n.
func (a *App) connectedVMs(n *Domain) []*Domain {
	var out []*Domain
	for _, d := range a.Domains() {
		if !d.IsQubesVM() {
			continue
		}
		if a.netvmOf(d) == n {
			out = append(out, d)
		}
	}
	return out
}

// ConnectedVMs is connectedVMs for callers outside core (ls --tree).
func (a *App) ConnectedVMs(n *Domain) []*Domain { return a.connectedVMs(n) }

// reaches reports whether target is among the qubes that get network
// through n (directly or further down). That is the case exactly when n is
// on target's netvm chain, so it walks that chain instead of building the
// whole closure.
func (a *App) reaches(n, target *Domain) bool {
	steps := 0
	for x := a.netvmOf(target); x != nil && steps <= len(a.domains); x = a.netvmOf(x) {
		if x == n {
			return true
		}
		if x == target {
			return false // a loop not through n
		}
		steps++
	}
	return false
}

func checkNetvm(a *App, d *Domain, v Value) (Value, error) {
	if v.None {
		return v, nil
	}
	n := a.byName[v.S]
	if n == nil {
		return v, valueErrorf("Can't set netvm to non-existing qube %s", v.S)
	}
	if a.loading {
		// The reference checks these in a pre-set event, which loading skips.
		return v, nil
	}
	if !n.IsQubesVM() {
		return v, valueErrorf("The %s qube does not provide network", v.S)
	}
	if pn, _ := a.Get(n, "provides_network"); !pn.Bool() {
		return v, valueErrorf("The %s qube does not provide network", v.S)
	}
	if n == d || a.reaches(d, n) {
		return v, valueErrorf("Loops in network are unsupported")
	}
	return v, nil
}

func afterNetvm(*App, *Domain, Value, bool) error { return nil }

func checkDefaultNetvm(a *App, _ *Domain, v Value) (Value, error) {
	if v.None || a.loading {
		return v, nil
	}
	n := a.byName[v.S]
	for _, d := range a.domains {
		if !d.IsQubesVM() || !a.IsDefault(d, "netvm") || d.Class == "TemplateVM" {
			continue
		}
		if n == d || a.reaches(d, n) {
			return v, valueErrorf("Network loop on '%s'", d.Name())
		}
	}
	return v, nil
}

func checkProvidesNetwork(a *App, d *Domain, v Value) (Value, error) {
	if !v.Bool() && !a.loading && len(a.connectedVMs(d)) > 0 {
		return v, valueErrorf("The qube is still used by other qubes, change theirs 'netvm' first")
	}
	return v, nil
}

func afterProvidesNetwork(a *App, d *Domain, _ Value, _ bool) error {
	if v, _ := a.Get(d, "provides_network"); v.Bool() {
		d.setFeature("servicevm", "1")
	} else {
		d.deleteFeature("servicevm")
	}
	return nil
}

// syncTag keeps exactly one "<prefix>-<vm>" tag equal to the property.
func (a *App) syncTag(d *Domain, prop string) {
	for t := range d.Tags {
		if strings.HasPrefix(t, prop+"-") {
			delete(d.Tags, t)
		}
	}
	if v, err := a.Get(d, prop); err == nil && !v.None {
		d.Tags[prop+"-"+v.S] = true
	}
}

func afterTagProp(prop string) func(*App, *Domain, Value, bool) error {
	return func(a *App, d *Domain, _ Value, _ bool) error {
		a.syncTag(d, prop)
		return nil
	}
}

func afterDefaultTagProp(prop string) func(*App, *Domain, Value, bool) error {
	return func(a *App, _ *Domain, _ Value, _ bool) error {
		for _, d := range a.domains {
			if d.IsQubesVM() && a.IsDefault(d, prop) {
				a.syncTag(d, prop)
			}
		}
		return nil
	}
}

func checkClockvm(a *App, _ *Domain, v Value) (Value, error) {
	if !v.None && !a.loading {
		if n := a.byName[v.S]; n != nil {
			if _, ok := n.Feature("service.clocksync"); !ok {
				n.setFeature("service.clocksync", "1")
			}
		}
	}
	return v, nil
}

func afterClockvm(a *App, _ *Domain, old Value, had bool) error {
	cur, _ := a.Get(nil, "clockvm")
	if had && !old.None && old.S != cur.S {
		if o := a.byName[old.S]; o != nil {
			if f, _ := o.Feature("service.clocksync"); f != "" {
				o.deleteFeature("service.clocksync")
			}
		}
	}
	return nil
}

func checkTemplateForDispvms(a *App, d *Domain, v Value) (Value, error) {
	if v.Bool() || a.loading {
		return v, nil
	}
	cur, _ := a.Get(d, "template_for_dispvms")
	if !cur.Bool() {
		return v, nil
	}
	name := d.Name()
	for _, g := range []string{"default_dispvm", "management_dispvm"} {
		if gv, _ := a.Get(nil, g); !gv.None && gv.S == name {
			return v, &InUseError{Msg: sprintf("Cannot change template_for_dispvms to False while there are some VMs based on this DVM template (system %s)", g)}
		}
	}
	for _, o := range a.domains {
		for _, p := range []string{"default_dispvm", "management_dispvm", "template"} {
			if ov, ok := o.props[p]; ok && o.Class != "AdminVM" && !ov.None && ov.S == name && (p != "template" || o.Class == "DispVM") {
				return v, &InUseError{Msg: sprintf("Cannot change template_for_dispvms to False while there are some VMs based on this DVM template (%s of %s)", p, o.Name())}
			}
			if ov, ok := o.props[p]; ok && o.Class == "AdminVM" && !ov.None && ov.S == name {
				return v, &InUseError{Msg: sprintf("Cannot change template_for_dispvms to False while there are some VMs based on this DVM template (%s of dom0)", p)}
			}
		}
	}
	return v, nil
}

func checkTemplateChange(a *App, d *Domain, v Value) (Value, error) {
	if v.None {
		return v, valueErrorf("Cannot unset template")
	}
	if !a.loading && a.running(d) {
		return v, valueErrorf("Cannot change template while qube is running")
	}
	return v, nil
}

// afterTemplate re-points snapshot volumes at the new template.
func afterTemplate(a *App, d *Domain, _ Value, _ bool) error {
	a.refreshSources(d)
	for _, o := range a.domains {
		if o.Class == "DispVM" {
			if t := o.props["template"]; t.S == d.Name() {
				a.refreshSources(o)
			}
		}
	}
	return nil
}
