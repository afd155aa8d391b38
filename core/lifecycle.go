package core

import (
	"crypto/rand"
	"math/big"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// standardLabels are the labels of a fresh state.
var standardLabels = []Label{
	{1, "red", "0xcc0000"}, {2, "orange", "0xf57900"}, {3, "yellow", "0xedd400"},
	{4, "green", "0x73d216"}, {5, "gray", "0x555555"}, {6, "blue", "0x3465a4"},
	{7, "purple", "0x75507b"}, {8, "black", "0x000000"},
}

// NewInitial is the state of a fresh install: the standard labels, the
// varlibqubes pool (file-reflink when reflink works in the state dir, else
// file), the linux-kernel pool, and dom0.
func NewInitial(stateDir string, host Host, reflink bool) *App {
	a := NewApp(stateDir, host)
	for _, l := range standardLabels {
		l := l
		a.Labels = append(a.Labels, &l)
	}
	driver := "file"
	if reflink {
		driver = "file-reflink"
	}
	vlq := &PoolConfig{Name: "varlibqubes", Driver: driver, Opts: []Opt{{"dir_path", stateDir}}}
	normalizePool(vlq)
	a.Pools = append(a.Pools, vlq,
		&PoolConfig{Name: "linux-kernel", Driver: "linux-kernel", Opts: []Opt{{"dir_path", stateDir + "/vm-kernels"}}})
	a.props["default_pool_kernel"] = str("linux-kernel")
	d := newDomain("AdminVM")
	d.props["label"] = str("black")
	a.addDomain(d)
	return a
}

// CreateOpts describe a new qube.
type CreateOpts struct {
	Class    string
	Name     string // empty for a DispVM: disp<dispid>
	Label    string
	Template string // empty: the class default
	Volumes  VolumeOpts
	// Rand draws dispids; nil uses crypto/rand.
	Rand func(n int64) int64
}

func cryptoRand(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err) // the kernel's CSPRNG does not fail
	}
	return v.Int64()
}

// CreatableClasses are the classes qvm create accepts.
func CreatableClasses() []string {
	return []string{"AppVM", "DispVM", "StandaloneVM", "TemplateVM"}
}

// Create adds a new qube with the reference's rules (name, qid, uuid,
// template, dispid, volume config, automatic tags and features).
func (a *App) Create(o CreateOpts) (*Domain, error) {
	if !slices.Contains(CreatableClasses(), o.Class) {
		return nil, valueErrorf("no such domain class: '%s'", o.Class)
	}
	d := newDomain(o.Class)
	if o.Class == "DispVM" {
		rnd := o.Rand
		if rnd == nil {
			rnd = cryptoRand
		}
		id, err := a.newDispID(rnd)
		if err != nil {
			return nil, err
		}
		d.props["dispid"] = intValue(id)
		if o.Name == "" {
			o.Name = sprintf("disp%d", id)
		}
	}
	if err := ValidateName(o.Name); err != nil {
		return nil, err
	}
	if _, exists := a.byName[o.Name]; exists {
		return nil, valueErrorf("A VM named %s already exists", o.Name)
	}
	qid, err := a.newQID()
	if err != nil {
		return nil, err
	}
	d.props["name"] = str(o.Name)
	d.props["qid"] = intValue(int64(qid))
	d.props["uuid"] = str(uuid.NewString())
	if o.Label == "" {
		return nil, valueErrorf("label is required")
	}
	l, err := a.Label(o.Label)
	if err != nil {
		return nil, err
	}
	d.props["label"] = str(l.Name)
	a.addDomain(d)
	ok := false
	defer func() {
		if !ok {
			a.removeDomain(d)
		}
	}()
	if err := a.setTemplateAtCreate(d, o.Template); err != nil {
		return nil, err
	}
	if d.Class == "DispVM" {
		a.copyFromDispTemplate(d)
	}
	if v, _ := a.Get(nil, "check_updates_vm"); !v.Bool() {
		d.setFeature("check-updates", "")
	}
	if err := a.initVolumes(d, o.Volumes); err != nil {
		return nil, err
	}
	a.addCreatedBy(d, "dom0")
	a.syncTag(d, "guivm")
	a.syncTag(d, "audiovm")
	ok = true
	return d, nil
}

func (a *App) setTemplateAtCreate(d *Domain, name string) error {
	switch d.Class {
	case "AppVM":
		if name == "" {
			v, err := a.Get(nil, "default_template")
			if err != nil {
				return err
			}
			if v.None {
				return valueErrorf("Template for the qube not specified, nor default template set.")
			}
			name = v.S
		}
	case "DispVM":
		if name == "" {
			v, _ := a.Get(nil, "default_dispvm")
			if v.None {
				return valueErrorf("No template for disposable given and no default_dispvm set")
			}
			name = v.S
		}
		if !a.templateForDispvms(a.byName[name]) {
			if _, ok := a.byName[name]; !ok {
				return valueErrorf("Can't set template to non-existing qube %s", name)
			}
			return valueErrorf("template for disposable (%s) needs to be an AppVM with template_for_dispvms=True", name)
		}
	default:
		if name != "" {
			return valueErrorf("%s has no template property", d.Class)
		}
		return nil
	}
	return a.Set(d, "template", name)
}

// copyFromDispTemplate copies the disposable template's explicit
// properties, features and tags into a new DispVM.
func (a *App) copyFromDispTemplate(d *Domain) {
	t := a.template(d)
	if t == nil {
		return
	}
	for name, v := range t.props {
		p, err := lookupProp(d, name)
		if err != nil || p.NoClone || name == "template" || p.ReadOnly || p.Stateless {
			continue
		}
		if _, set := d.props[name]; !set {
			d.props[name] = v
		}
	}
	for _, f := range t.Features {
		if !strings.HasPrefix(f.Name, "preload-dispvm") {
			d.setFeature(f.Name, f.Value)
		}
	}
	for tag := range t.Tags {
		d.Tags[tag] = true
	}
}

func (a *App) addCreatedBy(d *Domain, caller string) {
	d.Tags["created-by-"+caller] = true
	if c := a.byName[caller]; c != nil {
		if words, ok := c.Feature("tag-created-vm-with"); ok {
			for _, w := range strings.Fields(words) {
				if checkTagChars(w) == nil {
					d.Tags[w] = true
				}
			}
		}
		if g, ok := c.Feature("set-created-guivm"); ok && g != "" {
			if _, exists := a.byName[g]; exists {
				d.props["guivm"] = str(g)
			}
		}
	}
}

// newQID is the lowest unused qid in 1..9999.
func (a *App) newQID() (int, error) {
	used := make(map[int]bool, len(a.domains))
	for _, d := range a.domains {
		used[d.QID()] = true
	}
	for q := 1; q < MaxQID; q++ {
		if !used[q] {
			return q, nil
		}
	}
	return 0, valueErrorf("Cannot find unused qid!")
}

func (a *App) newDispID(rnd func(int64) int64) (int64, error) {
	used := map[int64]bool{}
	for _, d := range a.domains {
		if v, ok := d.props["dispid"]; ok {
			used[v.Int()] = true
		}
	}
	for i := 0; i < 100; i++ {
		id := rnd(MaxDispID)
		if !used[id] {
			return id, nil
		}
	}
	return 0, valueErrorf("Cannot find unused dispid")
}

// vmPropsChecked are the per-qube references that block removal.
var vmPropsChecked = []string{"template", "netvm", "guivm", "audiovm", "default_dispvm", "management_dispvm", "relayvm"}

var globalPropsChecked = []string{"default_dispvm", "default_netvm", "default_guivm", "default_audiovm", "default_template", "clockvm", "updatevm", "management_dispvm"}

// Dependencies lists what refers to d: global properties (defaults count)
// and explicitly set properties of other qubes.
func (a *App) Dependencies(d *Domain) []Dependency {
	var deps []Dependency
	name := d.Name()
	for _, g := range globalPropsChecked {
		if v, err := a.Get(nil, g); err == nil && !v.None && v.S == name {
			deps = append(deps, Dependency{Property: g})
		}
	}
	for _, o := range a.Domains() {
		if o == d {
			continue
		}
		for _, p := range vmPropsChecked {
			if v, ok := o.props[p]; ok && !v.None && v.S == name {
				deps = append(deps, Dependency{Holder: o.Name(), Property: p})
			}
		}
	}
	return deps
}

// Remove deletes a qube from the state after the reference's checks.
func (a *App) Remove(d *Domain) error {
	if d.Class == "AdminVM" {
		return valueErrorf("'dom0' cannot be removed")
	}
	if v, _ := a.Get(d, "installed_by_rpm"); d.IsQubesVM() && v.Bool() {
		return valueErrorf("VM installed by package manager: %s", d.Name())
	}
	if a.running(d) {
		return valueErrorf("Domain is not powered off: %s", d.Name())
	}
	if deps := a.Dependencies(d); len(deps) > 0 {
		return &InUseError{Msg: sprintf("Domain is in use: '%s'", d.Name()), Deps: deps}
	}
	var ports []string
	for _, o := range a.domains {
		if o.Class == "RemoteVM" {
			continue
		}
		for _, c := range o.Devices {
			for _, da := range c.Devices {
				if da.Backend == d.Name() && o != d {
					ports = append(ports, da.Port)
				}
			}
		}
	}
	if len(ports) > 0 {
		return &InUseError{Msg: "VM has devices assigned to other VMs: " + strings.Join(ports, ", ")}
	}
	a.removeDomain(d)
	return nil
}

// CloneOpts describe qvm clone.
type CloneOpts struct {
	Class   string // empty: same as the source
	Volumes VolumeOpts
}

// Clone creates a new qube with the source's metadata (properties that are
// not default, tags, features, device assignments). The caller copies the
// volume data.
func (a *App) Clone(src *Domain, name string, o CloneOpts) (*Domain, error) {
	if src.Class == "AdminVM" {
		return nil, valueErrorf("dom0 cannot be cloned")
	}
	class := o.Class
	if class == "" {
		class = src.Class
	}
	label, _ := a.Get(src, "label")
	tpl := ""
	// A clone into a class without a template (e.g. AppVM to StandaloneVM)
	// takes no template; its volumes are copied, not snapshotted.
	if src.HasTemplate() && (&Domain{Class: class}).HasTemplate() {
		if t, err := a.Get(src, "template"); err == nil && !t.None {
			tpl = t.S
		}
	}
	vo := o.Volumes
	if vo.Pool == "" && len(vo.Pools) == 0 {
		// Keep the source's pool where it differs from the default pool.
		vo.Pools = map[string]string{}
		for _, v := range src.Volumes {
			if v.RW && !v.SnapOnStart {
				if def, err := a.Get(nil, "default_pool_"+v.Name); err == nil && def.S != v.Pool {
					vo.Pools[v.Name] = v.Pool
				}
			}
		}
	}
	d, err := a.Create(CreateOpts{Class: class, Name: name, Label: label.S, Template: tpl, Volumes: vo})
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{"name": true, "qid": true, "template": true, "label": true, "uuid": true, "installed_by_rpm": true}
	for pname, v := range src.props {
		p, err := lookupProp(d, pname)
		if err != nil || skip[pname] || p.NoClone {
			continue
		}
		d.props[pname] = v
	}
	for tag := range src.Tags {
		if !strings.HasPrefix(tag, "created-by-") {
			d.Tags[tag] = true
		}
	}
	for _, f := range src.Features {
		if !strings.HasPrefix(f.Name, "preload-dispvm") || f.Name == "preload-dispvm-max" {
			d.setFeature(f.Name, f.Value)
		}
	}
	for _, c := range src.Devices {
		nc := &DeviceClass{Class: c.Class}
		for _, da := range c.Devices {
			cp := *da
			cp.Options = append([]Opt(nil), da.Options...)
			nc.Devices = append(nc.Devices, &cp)
		}
		d.Devices = append(d.Devices, nc)
	}
	a.syncTag(d, "guivm")
	a.syncTag(d, "audiovm")
	return d, nil
}
