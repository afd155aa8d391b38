package core

import (
	"sort"
	"strconv"

	"github.com/qvm-dev/qvm/core/xmltree"
)

// poolAttrOrder is the saved attribute order per driver.
var poolAttrOrder = map[string][]string{
	"file":         {"name", "dir_path", "driver", "revisions_to_keep", "ephemeral_volatile"},
	"file-reflink": {"name", "dir_path", "driver", "revisions_to_keep", "ephemeral_volatile"},
	"lvm_thin":     {"name", "volume_group", "thin_pool", "driver", "revisions_to_keep", "ephemeral_volatile"},
	"linux-kernel": {"name", "dir_path", "driver"},
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// Marshal writes the state as qubes.xml bytes in the reference's layout.
func (a *App) Marshal() []byte {
	root := xmltree.New("qubes")
	labels := root.Add(xmltree.New("labels"))
	ls := append([]*Label(nil), a.Labels...)
	sort.Slice(ls, func(i, j int) bool { return ls[i].Index < ls[j].Index })
	for _, l := range ls {
		e := labels.Add(xmltree.New("label", "id", "label-"+strconv.Itoa(l.Index), "color", l.Color))
		e.Text = l.Name
	}
	pools := root.Add(xmltree.New("pools"))
	for _, p := range a.Pools {
		pools.Add(poolElement(p))
	}
	props := root.Add(xmltree.New("properties"))
	for _, p := range globalTable.sorted() {
		if v, ok := a.props[p.Name]; ok {
			props.Add(propElement(p.Name, v))
		}
	}
	doms := root.Add(xmltree.New("domains"))
	for _, d := range a.Domains() {
		doms.Add(a.domainElement(d))
	}
	return xmltree.Marshal(root)
}

func poolElement(p *PoolConfig) *xmltree.Element {
	e := xmltree.New("pool")
	order, known := poolAttrOrder[p.Driver]
	if !known {
		order = []string{"name", "driver"}
	}
	done := map[string]bool{}
	for _, k := range order {
		switch k {
		case "name":
			e.SetAttr("name", p.Name)
		case "driver":
			e.SetAttr("driver", p.Driver)
		default:
			if v, ok := p.Get(k); ok {
				e.SetAttr(k, v)
			}
		}
		done[k] = true
	}
	for _, o := range p.Opts {
		if !done[o.Key] && (!known || o.Key != "setup_check") {
			e.SetAttr(o.Key, o.Value)
		}
	}
	return e
}

func propElement(name string, v Value) *xmltree.Element {
	e := xmltree.New("property", "name", name)
	e.Text = v.S
	e.Open = true
	return e
}

func (a *App) domainElement(d *Domain) *xmltree.Element {
	e := xmltree.New("domain", "id", "domain-"+strconv.Itoa(d.QID()), "class", d.Class)
	props := e.Add(xmltree.New("properties"))
	for _, p := range classTables[d.Class].sorted() {
		if v, ok := d.props[p.Name]; ok && !p.ReadOnly && !p.Stateless {
			props.Add(propElement(p.Name, v))
		}
	}
	feats := e.Add(xmltree.New("features"))
	for _, f := range d.Features {
		fe := feats.Add(xmltree.New("feature", "name", f.Name))
		fe.Text, fe.Open = f.Value, true
	}
	tags := e.Add(xmltree.New("tags"))
	for _, t := range d.SortedTags() {
		tags.Add(xmltree.New("tag", "name", t))
	}
	for _, c := range d.Devices {
		if len(c.Devices) == 0 {
			continue
		}
		ce := e.Add(xmltree.New("devices", "class", c.Class))
		for _, da := range c.Devices {
			de := ce.Add(xmltree.New("device", "backend-domain", da.Backend, "id", da.Port, "mode", da.Mode, "identity", da.Identity))
			for _, o := range da.Options {
				oe := de.Add(xmltree.New("option", "name", o.Key))
				oe.Text, oe.Open = o.Value, true
			}
		}
	}
	if d.IsQubesVM() {
		vc := e.Add(xmltree.New("volume-config"))
		for _, v := range d.Volumes {
			vid := v.Vid
			if p := a.Pool(v.Pool); p != nil && p.Driver == "linux-kernel" {
				k, err := a.Get(d, "kernel")
				vid = k.S
				if err != nil {
					vid = ""
				}
			}
			ve := vc.Add(xmltree.New("volume", "name", v.Name, "pool", v.Pool, "vid", vid,
				"revisions_to_keep", strconv.FormatInt(v.RevisionsToKeep, 10),
				"rw", pyBool(v.RW), "save_on_stop", pyBool(v.SaveOnStop), "snap_on_start", pyBool(v.SnapOnStart)))
			if v.Ephemeral != nil {
				ve.SetAttr("ephemeral", pyBool(*v.Ephemeral))
			}
			if v.Size != 0 {
				ve.SetAttr("size", strconv.FormatInt(v.Size, 10))
			}
			if v.Source != "" {
				ve.SetAttr("source", v.Source)
			}
		}
	}
	return e
}
