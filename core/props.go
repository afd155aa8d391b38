package core

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Kind is the type of a property value.
type Kind int

const (
	KStr Kind = iota
	KInt
	KBool
	KVM
	KLabel
	KUUID
	KIPv4
	KIPv6
)

// Prop describes one property of a class or of the app.
type Prop struct {
	Name      string
	Stage     int    // 2 or 4 for qubes, 3 for globals; decides saved order
	Kind      Kind   //
	VMClass   string // KVM: the class the referenced qube must have ("" any local qube)
	WriteOnce bool
	ReadOnly  bool // setter forbidden: never set, never saved
	Stateless bool // computed: listed, never saved, not settable
	NoClone   bool
	Help      string
	// def computes the default; nil means no default.
	def func(a *App, d *Domain) (Value, error)
	// check validates and normalises a value that already has the Kind's form.
	check func(a *App, d *Domain, v Value) (Value, error)
	// after runs side effects once the new value (or reset) is in place.
	after func(a *App, d *Domain, old Value, hadOld bool) error
}

// ctx is what a default or check needs.
type propTable struct {
	list   []*Prop
	byName map[string]*Prop
}

func newTable(props ...*Prop) *propTable {
	t := &propTable{byName: map[string]*Prop{}}
	for _, p := range props {
		t.add(p)
	}
	return t
}

func (t *propTable) add(p *Prop) {
	if old, ok := t.byName[p.Name]; ok {
		for i := range t.list {
			if t.list[i] == old {
				t.list[i] = p
			}
		}
	} else {
		t.list = append(t.list, p)
	}
	t.byName[p.Name] = p
}

func (t *propTable) with(props ...*Prop) *propTable {
	n := newTable(t.list...)
	for _, p := range props {
		n.add(p)
	}
	return n
}

// sorted returns the properties in saved order: (stage, name).
func (t *propTable) sorted() []*Prop {
	out := append([]*Prop(nil), t.list...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stage != out[j].Stage {
			return out[i].Stage < out[j].Stage
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Constants of the reference configuration.
const (
	MaxQID         = 10000
	MaxDispID      = 10000
	PrivateImgSize = 2147483648
	RootImgSize    = 10737418240
	defaultMAC     = "00:16:3e:5e:6c:00"
	ipv6Prefix     = "fd09:24ef:4179:0000"
)

func constant(v Value) func(*App, *Domain) (Value, error) {
	return func(*App, *Domain) (Value, error) { return v, nil }
}

// template returns the qube's template (nil for classes without one).
func (a *App) template(d *Domain) *Domain {
	if !d.HasTemplate() {
		return nil
	}
	v, err := a.Get(d, "template")
	if err != nil || v.None {
		return nil
	}
	return a.byName[v.S]
}

// fromTemplate: the template's value of the same property, else fallback.
func fromTemplate(name string, fallback func(*App, *Domain) (Value, error)) func(*App, *Domain) (Value, error) {
	return func(a *App, d *Domain) (Value, error) {
		if t := a.template(d); t != nil {
			return a.Get(t, name)
		}
		return fallback(a, d)
	}
}

func fromGlobal(name string) func(*App, *Domain) (Value, error) {
	return func(a *App, d *Domain) (Value, error) { return a.Get(nil, name) }
}

func positive(name string) func(*App, *Domain, Value) (Value, error) {
	return func(_ *App, _ *Domain, v Value) (Value, error) {
		if !v.None && v.Int() <= 0 {
			return v, valueErrorf("%s must be positive", name)
		}
		return v, nil
	}
}

var (
	reMAC        = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)
	reUser       = regexp.MustCompile(`^[A-Za-z0-9_+,.-]*$`)
	reDenied     = regexp.MustCompile(`^([bump*][0-9a-f*]{6})*$`)
	reKbdLayout  = regexp.MustCompile(`^[a-zA-Z]+$`)
	reKbdVariant = regexp.MustCompile(`^[a-zA-Z0-9-_]*$`)
	reKbdOptions = regexp.MustCompile(`^[a-zA-Z0-9-_:,]*$`)
)

// kernelDir is where kernel VERSION lives: the linux-kernel pool's dir.
func (a *App) kernelDir(version string) string {
	base := filepath.Join(a.StateDir, "vm-kernels")
	for _, p := range a.Pools {
		if p.Driver == "linux-kernel" {
			if dir, ok := p.Get("dir_path"); ok {
				base = dir
			}
			break
		}
	}
	return filepath.Join(base, version)
}

func (a *App) checkKernel(k string) error {
	if k == "" {
		return nil
	}
	dir := a.kernelDir(k)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return valueErrorf("Kernel '%s' not installed", k)
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinuz")); err != nil {
		return valueErrorf("Kernel '%s' not properly installed: missing 'vmlinuz' file", k)
	}
	return nil
}

func readTrimmed(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// dispvmRule: default_dispvm / management_dispvm values must be disposable templates.
func dispvmRule(prop string) func(*App, *Domain, Value) (Value, error) {
	return func(a *App, d *Domain, v Value) (Value, error) {
		if v.None {
			return v, nil
		}
		t := a.byName[v.S]
		if !a.templateForDispvms(t) {
			if d == nil {
				return v, valueErrorf("Cannot set invalid property to system, %s '%s' has template_for_dispvms set to False", prop, v.S)
			}
			return v, valueErrorf("Cannot set invalid property to qube '%s', %s '%s' has template_for_dispvms set to False", d.Name(), prop, v.S)
		}
		return v, nil
	}
}

func (a *App) templateForDispvms(d *Domain) bool {
	if d == nil || (d.Class != "AppVM" && d.Class != "StandaloneVM") {
		return false
	}
	v, err := a.Get(d, "template_for_dispvms")
	return err == nil && v.Bool()
}

// ipFromID computes 10.137.x.y / 10.138.x.y addresses.
func ipFromID(prefix string, id int64) string {
	if id < 255 {
		return sprintf("%s.%d.%d", prefix, id>>8, id&255)
	}
	n := id - 1
	return sprintf("%s.%d.%d", prefix, n/254, n%254+1)
}

func (a *App) networked(d *Domain) bool {
	if v, _ := a.Get(d, "provides_network"); v.Bool() {
		return true
	}
	v, err := a.Get(d, "netvm")
	return err == nil && !v.None
}

func (a *App) netvmOf(d *Domain) *Domain {
	v, err := a.Get(d, "netvm")
	if err != nil || v.None {
		return nil
	}
	return a.byName[v.S]
}

// checkWithTemplate looks a feature up in d, then its template chain.
func (a *App) checkWithTemplate(d *Domain, feature string) (string, bool) {
	for x, n := d, 0; x != nil && n < 16; x, n = a.template(x), n+1 {
		if v, ok := x.Feature(feature); ok {
			return v, true
		}
	}
	return "", false
}

// checkWithNetvm looks a feature up in d, then its netvm chain.
func (a *App) checkWithNetvm(d *Domain, feature string) (string, bool) {
	seen := map[*Domain]bool{}
	for x := d; x != nil && !seen[x]; x = a.netvmOf(x) {
		seen[x] = true
		if v, ok := x.Feature(feature); ok {
			return v, true
		}
	}
	return "", false
}

func (a *App) defaultMaxmem(d *Domain) (Value, error) {
	if !a.Host.Xen || d.HasPCI() {
		return intValue(0), nil
	}
	if vm, _ := a.Get(d, "virt_mode"); vm.S == "hvm" {
		q, _ := a.checkWithTemplate(d, "qrexec")
		if q == "" {
			return intValue(0), nil
		}
		if _, ok := a.checkWithTemplate(d, "supported-service.meminfo-writer"); !ok {
			for x, n := d, 0; x != nil && n < 16; x, n = a.template(x), n+1 {
				for _, f := range x.Features {
					if strings.HasPrefix(f.Name, "supported-service.") {
						return intValue(0), nil
					}
				}
			}
		}
	}
	if t := a.template(d); t != nil {
		return a.Get(t, "maxmem")
	}
	limit := int64(4000)
	if os, _ := d.Feature("os"); os == "Linux" {
		m, err := a.Get(d, "memory")
		if err != nil {
			return none, err
		}
		limit = m.Int() * 10
	}
	if half := a.Host.MemMiB / 2; a.Host.MemMiB > 0 && half < limit {
		limit = half
	}
	return intValue(limit), nil
}

func (a *App) defaultKernelopts(d *Domain) (Value, error) {
	k, err := a.Get(d, "kernel")
	if err != nil {
		return none, err
	}
	if k.S == "" {
		return str(""), nil
	}
	dir := a.kernelDir(k.S)
	if d.HasPCI() {
		opts, _ := readTrimmed(filepath.Join(dir, "default-kernelopts-pci.txt"))
		if s, _ := a.Dom0().Feature("suspend-s0ix"); s != "" {
			opts += " qubes_exp_pm_use_suspend=1"
		}
		return str(opts), nil
	}
	if t := a.template(d); t != nil {
		return a.Get(t, "kernelopts")
	}
	if opts, ok := readTrimmed(filepath.Join(dir, "default-kernelopts-nopci.txt")); ok {
		return str(opts), nil
	}
	return str("swiotlb=2048"), nil
}

func (a *App) defaultBootmode(d *Domain) (Value, error) {
	hasMode := func(x *Domain, mode string) bool {
		_, ok := a.checkWithTemplate(x, "boot-mode.kernelopts."+mode)
		return ok
	}
	if m, ok := d.Feature("boot-mode.active"); ok {
		if m == "default" || hasMode(d, m) {
			return str(m), nil
		}
	}
	for t, n := a.template(d), 0; t != nil && n < 16; t, n = a.template(t), n+1 {
		v, err := a.Get(t, "appvm_default_bootmode")
		if err != nil {
			continue
		}
		if v.S == "default" || hasMode(t, v.S) {
			return v, nil
		}
	}
	return str("default"), nil
}
