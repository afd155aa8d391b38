package core

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/qvm-dev/qvm/core/xmltree"
)

// maxStateSize bounds qubes.xml; a real one with thousands of qubes is a
// few MiB.
const maxStateSize = 64 << 20

// NewApp makes an empty state for the given state dir.
func NewApp(stateDir string, host Host) *App {
	return &App{StateDir: stateDir, Host: host, props: map[string]Value{}, byName: map[string]*Domain{}}
}

type loader struct {
	a    *App
	path string
	// seen indexes qids and uuids for the duplicate checks.
	qids  map[int]*Domain
	uuids map[string]*Domain
}

func (l *loader) errAt(e *xmltree.Element, format string, args ...any) error {
	le := &LoadError{Path: l.path, Msg: sprintf(format, args...)}
	if e != nil {
		le.Line, le.Elem = e.Line, e.Describe()
	}
	return le
}

// Parse loads qubes.xml content; path is used in error messages only.
func Parse(data []byte, path, stateDir string, host Host) (*App, error) {
	if len(data) > maxStateSize {
		return nil, &LoadError{Path: path, Msg: sprintf("file is larger than %d bytes", maxStateSize)}
	}
	root, err := xmltree.Parse(data)
	if err != nil {
		var se *xmltree.SyntaxError
		if errors.As(err, &se) {
			return nil, &LoadError{Path: path, Line: se.Line, Msg: "malformed XML: " + se.Msg}
		}
		return nil, &LoadError{Path: path, Msg: err.Error()}
	}
	a := NewApp(stateDir, host)
	l := &loader{a: a, path: path, qids: map[int]*Domain{}, uuids: map[string]*Domain{}}
	if err := l.load(root); err != nil {
		return nil, err
	}
	return a, nil
}

type pending struct {
	d     *Domain
	e     *xmltree.Element
	props []*xmltree.Element
}

func (l *loader) load(root *xmltree.Element) error {
	a := l.a
	switch root.Name {
	case "qubes":
	case "QubesVmCollection":
		return l.errAt(root, "this is an R3 qubes.xml (QubesVmCollection); qvm reads R4 files only (R3 qubes can be brought over with qvm restore)")
	default:
		return l.errAt(root, "root element must be <qubes>")
	}
	a.loading = true
	defer func() { a.loading = false }()

	if err := l.labels(root.Child("labels")); err != nil {
		return err
	}
	if err := l.pools(root.Child("pools")); err != nil {
		return err
	}
	// Stage 2: construct every domain and load its stage-2 properties.
	var doms []*pending
	if de := root.Child("domains"); de != nil {
		for _, e := range de.ChildrenNamed("domain") {
			p, err := l.domainStage2(e)
			if err != nil {
				return err
			}
			doms = append(doms, p)
		}
	}
	if a.Dom0() == nil {
		d := newDomain("AdminVM")
		a.addDomain(d)
	}
	// Globals (stage 3), with the migrations of the reference.
	var globals []*xmltree.Element
	if pe := root.Child("properties"); pe != nil {
		globals = pe.ChildrenNamed("property")
	}
	globals, err := l.migrateGlobals(globals, doms)
	if err != nil {
		return err
	}
	for _, e := range globals {
		if err := l.prop(nil, e); err != nil {
			return err
		}
	}
	// Stage 4: VM-reference properties, then features, tags, devices, volumes.
	for _, p := range doms {
		for _, e := range p.props {
			if pr, err := lookupProp(p.d, propName(e)); err == nil && pr.Stage == 4 {
				if err := l.prop(p.d, e); err != nil {
					return err
				}
			}
		}
	}
	for _, p := range doms {
		if err := l.extras(p); err != nil {
			return err
		}
	}
	a.loading = false
	for _, d := range a.Domains() {
		l.domainLoaded(d)
	}
	return nil
}

func propName(e *xmltree.Element) string { n, _ := e.Attr("name"); return n }

func (l *loader) labels(le *xmltree.Element) error {
	if le == nil {
		return nil
	}
	for _, e := range le.ChildrenNamed("label") {
		id, _ := e.Attr("id")
		idx, err := strconv.Atoi(strings.SplitN(id, "-", 2)[len(strings.SplitN(id, "-", 2))-1])
		if !strings.Contains(id, "-") || err != nil || idx < 1 {
			return l.errAt(e, "label id must be label-N, got %q", id)
		}
		color, _ := e.Attr("color")
		if color == "0x555753" {
			color = "0x555555"
		}
		name := e.Text
		for _, o := range l.a.Labels {
			if o.Index == idx || o.Name == name {
				return l.errAt(e, "duplicate label %s (index %d)", name, idx)
			}
		}
		l.a.Labels = append(l.a.Labels, &Label{Index: idx, Name: name, Color: color})
	}
	return nil
}

func (l *loader) pools(pe *xmltree.Element) error {
	if pe == nil {
		return nil
	}
	for _, e := range pe.ChildrenNamed("pool") {
		p := &PoolConfig{}
		for _, at := range e.Attrs {
			switch at.Name {
			case "name":
				p.Name = at.Value
			case "driver":
				p.Driver = at.Value
			default:
				p.Opts = append(p.Opts, Opt{at.Name, at.Value})
			}
		}
		if p.Name == "" || p.Driver == "" {
			return l.errAt(e, "pool needs name and driver attributes")
		}
		if l.a.Pool(p.Name) != nil {
			return l.errAt(e, "duplicate pool %s", p.Name)
		}
		normalizePool(p)
		l.a.Pools = append(l.a.Pools, p)
	}
	return nil
}

// normalizePool fills the options every saved pool of a driver carries.
func normalizePool(p *PoolConfig) {
	switch p.Driver {
	case "file", "file-reflink", "lvm_thin":
		if _, ok := p.Get("revisions_to_keep"); !ok {
			p.Set("revisions_to_keep", "1")
		}
		if v, ok := p.Get("ephemeral_volatile"); !ok {
			p.Set("ephemeral_volatile", "False")
		} else if b, err := ParseBool(v); err == nil || v == "" {
			p.Set("ephemeral_volatile", boolValue(b).S)
		}
	}
}

func (l *loader) domainStage2(e *xmltree.Element) (*pending, error) {
	a := l.a
	class, _ := e.Attr("class")
	if _, ok := classTables[class]; !ok {
		return nil, l.errAt(e, "no such VM class: '%s'", class)
	}
	d := newDomain(class)
	d.line = e.Line
	p := &pending{d: d, e: e}
	if pe := e.Child("properties"); pe != nil {
		for _, pr := range pe.ChildrenNamed("property") {
			name := propName(pr)
			// Per-class migrations of old property names.
			switch {
			case name == "hvm" && d.IsQubesVM():
				b, _ := ParseBool(pr.Text)
				mode := "pv"
				if b {
					mode = "hvm"
				}
				pr = &xmltree.Element{Name: "property", Attrs: []xmltree.Attr{{Name: "name", Value: "virt_mode"}}, Text: mode, Line: pr.Line}
				name = "virt_mode"
			case name == "dispvm_allowed" && d.Class == "AppVM":
				pr = &xmltree.Element{Name: "property", Attrs: []xmltree.Attr{{Name: "name", Value: "template_for_dispvms"}}, Text: pr.Text, Line: pr.Line}
				name = "template_for_dispvms"
			}
			prop, err := lookupProp(d, name)
			if err != nil {
				return nil, l.errAt(pr, "property '%s' not applicable to '%s'", name, class)
			}
			if prop.ReadOnly || prop.Stateless {
				return nil, l.errAt(pr, "property '%s' of %s cannot be stored in qubes.xml", name, class)
			}
			p.props = append(p.props, pr)
			if prop.Stage != 4 {
				if err := l.prop(d, pr); err != nil {
					return nil, err
				}
			}
		}
	}
	if class != "AdminVM" {
		if _, ok := d.props["name"]; !ok {
			return nil, l.errAt(e, "domain has no name property")
		}
		if _, ok := d.props["qid"]; !ok {
			return nil, l.errAt(e, "domain %s has no qid property", d.Name())
		}
	}
	if o := l.qids[d.QID()]; o != nil {
		return nil, l.errAt(e, "duplicate qid %d (also used by %s at line %d)", d.QID(), o.Name(), o.line)
	}
	if o := a.byName[d.Name()]; o != nil {
		return nil, l.errAt(e, "duplicate name %s (also at line %d)", d.Name(), o.line)
	}
	if u := d.props["uuid"].S; u != "" {
		if o := l.uuids[u]; o != nil {
			return nil, l.errAt(e, "duplicate uuid %s (also used by %s at line %d)", u, o.Name(), o.line)
		}
		l.uuids[u] = d
	}
	l.qids[d.QID()] = d
	if class == "AdminVM" && a.Dom0() != nil {
		return nil, l.errAt(e, "more than one AdminVM")
	}
	a.addDomain(d)
	return p, nil
}

// prop loads one <property> through the normal setter, without events.
func (l *loader) prop(d *Domain, e *xmltree.Element) error {
	name := propName(e)
	p, err := lookupProp(d, name)
	if err != nil {
		if d == nil {
			return l.errAt(e, "property '%s' not applicable to 'Qubes'", name)
		}
		return l.errAt(e, "property '%s' not applicable to '%s'", name, d.Class)
	}
	text := e.Text
	ref, hasRef := e.Attr("ref")
	if hasRef {
		text = ref
	}
	var v Value
	if text == "" && !hasRef {
		switch p.Kind {
		case KVM, KInt, KIPv4, KIPv6:
			v = none
		default:
			v = str("")
		}
		if p.Kind == KLabel || p.Kind == KUUID {
			return l.errAt(e, "property '%s' is empty", name)
		}
	} else {
		v, err = l.a.coerce(p, d, text)
		if err != nil {
			return l.errAt(e, "%s", l.describeRefError(p, text, err))
		}
	}
	if err := l.a.setValue(p, d, v); err != nil {
		return l.errAt(e, "%v", err)
	}
	return nil
}

func (l *loader) describeRefError(p *Prop, text string, err error) string {
	if p.Kind == KVM {
		if _, ok := l.a.byName[text]; !ok {
			return sprintf("property '%s' refers to qube '%s', which does not exist", p.Name, text)
		}
	}
	return err.Error()
}

// migrateGlobals applies default_fw_netvm and dispvm-reference migrations.
func (l *loader) migrateGlobals(globals []*xmltree.Element, doms []*pending) ([]*xmltree.Element, error) {
	a := l.a
	var out []*xmltree.Element
	var fw, netvm string
	var hasFw bool
	for _, e := range globals {
		switch propName(e) {
		case "default_fw_netvm":
			fw, hasFw = e.Text, true
			if r, ok := e.Attr("ref"); ok {
				fw = r
			}
			continue
		case "default_netvm":
			netvm = e.Text
		}
		out = append(out, e)
	}
	if hasFw && fw != "" && fw != netvm {
		if _, ok := a.byName[fw]; ok {
			for _, p := range doms {
				if !p.d.IsQubesVM() {
					continue
				}
				pn, _ := a.Get(p.d, "provides_network")
				hasNetvm := false
				for _, pr := range p.props {
					if propName(pr) == "netvm" {
						hasNetvm = true
					}
				}
				if pn.Bool() && !hasNetvm {
					p.props = append(p.props, &xmltree.Element{Name: "property", Attrs: []xmltree.Attr{{Name: "name", Value: "netvm"}}, Text: fw, Line: p.e.Line})
				}
			}
		}
	}
	// A dispvm reference to a qube that is not a disposable template becomes explicit None.
	fix := func(list []*xmltree.Element, d *Domain) {
		for i, e := range list {
			n := propName(e)
			if n != "default_dispvm" && n != "management_dispvm" {
				continue
			}
			if e.Text != "" && !a.templateForDispvms(a.byName[e.Text]) {
				list[i] = &xmltree.Element{Name: "property", Attrs: []xmltree.Attr{{Name: "name", Value: n}}, Line: e.Line}
				a.logf("%s: %s '%s' is not a disposable template, set to None", nameOr(d), n, e.Text)
			}
		}
	}
	fix(out, nil)
	for _, p := range doms {
		fix(p.props, p.d)
	}
	return out, nil
}

func nameOr(d *Domain) string {
	if d == nil {
		return "global"
	}
	return d.Name()
}

// extras loads features, tags, devices and volume config of one domain.
func (l *loader) extras(p *pending) error {
	d, e := p.d, p.e
	if fe := e.Child("features"); fe != nil {
		for _, f := range fe.ChildrenNamed("feature") {
			name, ok := f.Attr("name")
			if !ok || name == "" {
				return l.errAt(f, "feature without a name")
			}
			d.setFeature(name, f.Text)
		}
	}
	if te := e.Child("tags"); te != nil {
		for _, t := range te.ChildrenNamed("tag") {
			name, _ := t.Attr("name")
			if err := checkTagChars(name); err != nil || name == "" {
				return l.errAt(t, "invalid tag %q", name)
			}
			d.Tags[name] = true
		}
	}
	for _, de := range e.ChildrenNamed("devices") {
		class, _ := de.Attr("class")
		if class == "" {
			return l.errAt(de, "devices element without class")
		}
		for _, x := range de.ChildrenNamed("device") {
			if err := l.device(d, class, x); err != nil {
				return err
			}
		}
	}
	if d.IsQubesVM() {
		return l.volumes(d, e.Child("volume-config"))
	}
	return nil
}

func (l *loader) device(d *Domain, class string, e *xmltree.Element) error {
	a := l.a
	da := &DeviceAssignment{Port: "*", Mode: "required", Identity: "*"}
	da.Backend, _ = e.Attr("backend-domain")
	if v, ok := e.Attr("id"); ok {
		da.Port = v
	}
	if v, ok := e.Attr("mode"); ok {
		da.Mode = v
	}
	if v, ok := e.Attr("identity"); ok {
		da.Identity = v
	}
	if v, ok := e.Attr("required"); ok {
		b, err := ParseBool(v)
		if err != nil {
			return l.errAt(e, "bad required attribute %q", v)
		}
		da.Mode = "auto-attach"
		if b {
			da.Mode = "required"
		}
	}
	for _, o := range e.ChildrenNamed("option") {
		k, _ := o.Attr("name")
		val := o.Text
		if val == "" && !o.Open {
			val = "None"
		}
		if k == "identity" {
			da.Identity = val
			continue
		}
		da.Options = append(da.Options, Opt{k, val})
	}
	switch da.Mode {
	case "required", "auto-attach", "ask-to-attach":
	case "manual":
		return l.errAt(e, "device assignment mode 'manual' cannot be stored")
	default:
		a.logf("%s: Unrecognized assignment mode, ignoring.", d.Name())
		return nil
	}
	if da.Backend != "" {
		if _, ok := a.byName[da.Backend]; !ok {
			a.logf("%s: Cannot find backend domain '%s' for device type %s '%s'", d.Name(), da.Backend, class, da.Port)
			return nil
		}
	}
	c := d.DeviceClass(class)
	if c == nil {
		c = &DeviceClass{Class: class}
		d.Devices = append(d.Devices, c)
	}
	for _, o := range c.Devices {
		if o.Backend == da.Backend && o.Port == da.Port && o.Identity == da.Identity {
			return l.errAt(e, "duplicate %s assignment %s:%s", class, da.Backend, da.Port)
		}
	}
	c.Devices = append(c.Devices, da)
	return nil
}

func (l *loader) volumes(d *Domain, ve *xmltree.Element) error {
	a := l.a
	given := map[string]*xmltree.Element{}
	var order []string
	if ve != nil {
		for _, e := range ve.ChildrenNamed("volume") {
			name, _ := e.Attr("name")
			if name == "" {
				return l.errAt(e, "volume without a name")
			}
			if given[name] != nil {
				return l.errAt(e, "duplicate volume %s", name)
			}
			given[name] = e
			order = append(order, name)
		}
	}
	names := append([]string(nil), standardVolumes...)
	for _, n := range order {
		if classVolume(d.Class, n) != nil && !slices.Contains(standardVolumes, n) {
			names = append(names, n)
		}
	}
	for _, name := range names {
		v := classVolume(d.Class, name)
		e := given[name]
		var hasPool, hasVid, hasRev, hasSize bool
		if e != nil {
			for _, at := range e.Attrs {
				var err error
				switch at.Name {
				case "name", "internal":
				case "pool":
					v.Pool, hasPool = at.Value, true
				case "vid":
					v.Vid, hasVid = at.Value, true
				case "revisions_to_keep":
					v.RevisionsToKeep, err = parseInt(at.Value)
					hasRev = true
				case "rw":
					v.RW, err = ParseBool(at.Value)
				case "save_on_stop":
					v.SaveOnStop, err = ParseBool(at.Value)
				case "snap_on_start":
					v.SnapOnStart, err = ParseBool(at.Value)
				case "ephemeral":
					var b bool
					b, err = ParseBool(at.Value)
					v.Ephemeral = &b
				case "size":
					v.Size, err = parseInt(at.Value)
					hasSize = true
				case "source":
					v.Source = at.Value
				default:
					// Driver-specific keys of other implementations are not ours to keep.
				}
				if err != nil {
					return l.errAt(e, "volume %s: attribute %s: %v", name, at.Name, err)
				}
			}
		}
		if v.Size < 0 {
			return l.errAt(e, "volume %s: negative size", name)
		}
		if !hasPool {
			pv, err := a.Get(nil, "default_pool_"+name)
			if err != nil {
				return l.errAt(ve, "volume %s of %s: %v", name, d.Name(), err)
			}
			v.Pool = pv.S
		}
		pool := a.Pool(v.Pool)
		if pool == nil {
			return l.errAt(e, "volume %s of %s is in pool '%s', which does not exist", name, d.Name(), v.Pool)
		}
		if v.SnapOnStart && v.Source == "" {
			a.resolveSource(d, v)
			_ = hasSize
		}
		if !v.SnapOnStart {
			v.Source = ""
		}
		if !hasVid {
			v.Vid = a.vidFor(d, pool, name)
		}
		if !hasRev {
			v.RevisionsToKeep = poolRevisions(pool, v)
		}
		d.Volumes = append(d.Volumes, v)
	}
	return nil
}

// domainLoaded runs the reference's domain-load handlers.
func (l *loader) domainLoaded(d *Domain) {
	a := l.a
	if d.Class == "AdminVM" {
		return
	}
	if _, ok := d.props["uuid"]; !ok {
		d.props["uuid"] = str(uuid.NewString())
	}
	if !d.IsQubesVM() {
		return
	}
	if n := a.netvmOf(d); n != nil {
		if n == d {
			a.logf("%s: network-connected to itself, breaking the connection", d.Name())
			d.props["netvm"] = none
		} else if a.reaches(d, n) {
			a.logf("%s: netvm loop detected, breaking the connection", d.Name())
			d.props["netvm"] = none
		}
	}
	a.syncTag(d, "guivm")
	a.syncTag(d, "audiovm")
	if v, ok := d.Feature("service.meminfo-writer"); ok {
		if v == "" {
			d.props["maxmem"] = intValue(0)
		}
		d.deleteFeature("service.meminfo-writer")
	}
}
