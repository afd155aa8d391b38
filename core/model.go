package core

import (
	"sort"
	"strings"
)

// Label is a colour label; indexes 1-8 are the standard ones.
type Label struct {
	Index int
	Name  string
	Color string
}

// PoolConfig is a <pool> element: name, driver and the driver's other
// options in their saved order.
type PoolConfig struct {
	Name   string
	Driver string
	Opts   []Opt
}

// Opt is a key=value pair kept in order.
type Opt struct{ Key, Value string }

// Get returns a pool option.
func (p *PoolConfig) Get(key string) (string, bool) {
	for _, o := range p.Opts {
		if o.Key == key {
			return o.Value, true
		}
	}
	return "", false
}

// Set sets or appends a pool option.
func (p *PoolConfig) Set(key, value string) {
	for i := range p.Opts {
		if p.Opts[i].Key == key {
			p.Opts[i].Value = value
			return
		}
	}
	p.Opts = append(p.Opts, Opt{key, value})
}

// Feature is one feature; features keep insertion order like the reference.
type Feature struct{ Name, Value string }

// DeviceAssignment is a persistent assignment, kept as data here.
type DeviceAssignment struct {
	Backend  string // backend domain name
	Port     string // port id or "*"
	Mode     string // required, auto-attach, ask-to-attach
	Identity string // device id or "*"
	Options  []Opt
}

// DeviceClass groups the assignments of one bus (pci, block, usb, …).
type DeviceClass struct {
	Class   string
	Devices []*DeviceAssignment
}

// VolumeConfig is one <volume> of a qube.
type VolumeConfig struct {
	Name            string
	Pool            string
	Vid             string
	RevisionsToKeep int64
	RW              bool
	SaveOnStop      bool
	SnapOnStart     bool
	Ephemeral       *bool // nil: not set explicitly
	Size            int64
	Source          string // vid of the source volume, snapshot volumes only
}

// Domain is one qube. Explicit property values are kept in their saved text
// form; everything else is computed on read.
type Domain struct {
	Class    string
	props    map[string]Value
	Features []Feature
	Tags     map[string]bool
	Devices  []*DeviceClass
	Volumes  []*VolumeConfig
	line     int
}

func newDomain(class string) *Domain {
	return &Domain{Class: class, props: map[string]Value{}, Tags: map[string]bool{}}
}

// Name of the qube.
func (d *Domain) Name() string {
	if d.Class == "AdminVM" {
		return "dom0"
	}
	return d.props["name"].S
}

// QID of the qube.
func (d *Domain) QID() int {
	if d.Class == "AdminVM" {
		return 0
	}
	return int(d.props["qid"].Int())
}

// UUID of the qube.
func (d *Domain) UUID() string {
	if d.Class == "AdminVM" {
		return "00000000-0000-0000-0000-000000000000"
	}
	return d.props["uuid"].S
}

// Explicit reports whether a property is set explicitly and its value.
func (d *Domain) Explicit(name string) (Value, bool) {
	v, ok := d.props[name]
	return v, ok
}

// IsQubesVM: the classes that run (have volumes, netvm, …).
func (d *Domain) IsQubesVM() bool {
	switch d.Class {
	case "AppVM", "TemplateVM", "StandaloneVM", "DispVM":
		return true
	}
	return false
}

// HasTemplate: the classes that have a template property.
func (d *Domain) HasTemplate() bool { return d.Class == "AppVM" || d.Class == "DispVM" }

// Feature returns a feature value and whether it is present.
func (d *Domain) Feature(name string) (string, bool) {
	for _, f := range d.Features {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// setFeature sets a feature without validation (callers validate).
func (d *Domain) setFeature(name, value string) {
	for i := range d.Features {
		if d.Features[i].Name == name {
			d.Features[i].Value = value
			return
		}
	}
	d.Features = append(d.Features, Feature{name, value})
}

// deleteFeature removes a feature; it reports whether it was there.
func (d *Domain) deleteFeature(name string) bool {
	for i := range d.Features {
		if d.Features[i].Name == name {
			d.Features = append(d.Features[:i], d.Features[i+1:]...)
			return true
		}
	}
	return false
}

// SortedTags lists the tags in order.
func (d *Domain) SortedTags() []string {
	out := make([]string, 0, len(d.Tags))
	for t := range d.Tags {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Volume returns the named volume config or nil.
func (d *Domain) Volume(name string) *VolumeConfig {
	for _, v := range d.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// DeviceClass returns the assignments of one bus (nil when none).
func (d *Domain) DeviceClass(class string) *DeviceClass {
	for _, c := range d.Devices {
		if c.Class == class {
			return c
		}
	}
	return nil
}

// HasPCI: any PCI device assigned (decides virt_mode and maxmem defaults).
func (d *Domain) HasPCI() bool {
	c := d.DeviceClass("pci")
	return c != nil && len(c.Devices) > 0
}

// Host facts the defaults depend on; the caller fills them (tests fix them).
type Host struct {
	Xen      bool  // running on Xen (memory balancing possible)
	MemMiB   int64 // host memory in MiB
	CPUs     int
	Dom0Max  int64 // dom0 static-max in MiB (0: unknown)
	Username string
}

// App is the whole qubes.xml state.
type App struct {
	StateDir string
	Host     Host
	Labels   []*Label
	Pools    []*PoolConfig
	props    map[string]Value
	domains  []*Domain
	byName   map[string]*Domain
	loading  bool
	// Log receives notes about load-time migrations (loop breaking, …).
	Log func(msg string)
	// IsRunning tells whether a qube runs; nil means nothing runs.
	IsRunning func(d *Domain) bool
	// PowerState is a qube's power state from the hypervisor (Halted,
	// Running, Paused, …); nil means not asked.
	PowerState func(d *Domain) string
}

func (a *App) logf(format string, args ...any) {
	if a.Log != nil {
		a.Log(sprintf(format, args...))
	}
}

func (a *App) running(d *Domain) bool {
	return a.IsRunning != nil && d.Class != "AdminVM" && a.IsRunning(d)
}

// Domains returns every domain: dom0 first, then sorted by name.
func (a *App) Domains() []*Domain {
	out := make([]*Domain, len(a.domains))
	copy(out, a.domains)
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Class == "AdminVM") != (out[j].Class == "AdminVM") {
			return out[i].Class == "AdminVM"
		}
		return out[i].Name() < out[j].Name()
	})
	return out
}

// Domain looks a qube up by name.
func (a *App) Domain(name string) (*Domain, error) {
	if d, ok := a.byName[name]; ok {
		return d, nil
	}
	return nil, &NoSuchQubeError{Name: name}
}

// Dom0 returns the AdminVM.
func (a *App) Dom0() *Domain { return a.byName["dom0"] }

// Label looks a label up the way the reference does: by index, by name,
// by a numeric string, and (for the VM label setter) by "label-N".
func (a *App) Label(ref string) (*Label, error) {
	for _, l := range a.Labels {
		if l.Name == ref {
			return l, nil
		}
	}
	idx := strings.TrimPrefix(ref, "label-")
	if n, err := parseInt(idx); err == nil {
		for _, l := range a.Labels {
			if int64(l.Index) == n {
				return l, nil
			}
		}
	}
	return nil, valueErrorf("Label does not exist: %s", ref)
}

// Pool returns the pool with that name or nil.
func (a *App) Pool(name string) *PoolConfig {
	for _, p := range a.Pools {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (a *App) addDomain(d *Domain) {
	a.domains = append(a.domains, d)
	a.byName[d.Name()] = d
}

func (a *App) removeDomain(d *Domain) {
	for i, x := range a.domains {
		if x == d {
			a.domains = append(a.domains[:i], a.domains[i+1:]...)
			break
		}
	}
	delete(a.byName, d.Name())
}

// GlobalExplicit reports whether a global property is set and its value.
func (a *App) GlobalExplicit(name string) (Value, bool) {
	v, ok := a.props[name]
	return v, ok
}
