package core

import "strings"

// ImportOpts describe a qube restored from a backup's qubes.xml.
type ImportOpts struct {
	Name     string // name on this host (maybe renamed)
	Label    string // label name; unknown labels fall back to red
	Template string // template on this host ("" for none or the default)
	Volumes  VolumeOpts
}

// restoreSkip are the properties the reference restore does not copy
// (netvm and default_dispvm are set afterwards by the caller, once every
// restored qube exists).
var restoreSkip = map[string]bool{"name": true, "qid": true, "uuid": true, "label": true,
	"template": true, "dispid": true, "netvm": true, "default_dispvm": true,
	"installed_by_rpm": true, "backup_timestamp": false}

// ImportDomain creates a qube from src, a domain of another App (the
// backup's qubes.xml): class, label and template as given, then the
// explicit properties, features (without backup-*), tags, device
// assignments and the sizes of its saved volumes. References to qubes
// that do not exist here are left at their defaults.
func (a *App) ImportDomain(src *Domain, o ImportOpts) (*Domain, error) {
	if src.Class == "AdminVM" {
		return nil, valueErrorf("dom0 cannot be restored as a qube")
	}
	label := o.Label
	if _, err := a.Label(label); err != nil {
		label = "red"
	}
	d, err := a.Create(CreateOpts{Class: src.Class, Name: o.Name, Label: label, Template: o.Template, Volumes: o.Volumes})
	if err != nil {
		return nil, err
	}
	for pname, v := range src.props {
		p, err := lookupProp(d, pname)
		if err != nil || restoreSkip[pname] || p.ReadOnly || p.Stateless {
			continue
		}
		if p.Kind == KVM && !v.None && a.byName[v.S] == nil {
			continue
		}
		d.props[pname] = v
	}
	for tag := range src.Tags {
		d.Tags[tag] = true
	}
	for _, f := range src.Features {
		if strings.HasPrefix(f.Name, "backup-") {
			continue
		}
		if strings.HasPrefix(f.Name, "preload-dispvm") && f.Name != "preload-dispvm-max" {
			continue
		}
		d.setFeature(f.Name, f.Value)
	}
	d.Devices = nil
	for _, c := range src.Devices {
		nc := &DeviceClass{Class: c.Class}
		for _, da := range c.Devices {
			cp := *da
			cp.Options = append([]Opt(nil), da.Options...)
			nc.Devices = append(nc.Devices, &cp)
		}
		d.Devices = append(d.Devices, nc)
	}
	for _, sv := range src.Volumes {
		if dv := d.Volume(sv.Name); dv != nil && sv.Size > dv.Size && !dv.SnapOnStart {
			dv.Size = sv.Size
		}
	}
	a.syncTag(d, "guivm")
	a.syncTag(d, "audiovm")
	return d, nil
}

// PrepareBackupCopy marks a parsed copy of qubes.xml for a backup, as the
// reference writer does: backup-content on every domain (1 for the
// backed-up ones, with backup-path and backup-size), preload-dispvm*
// features dropped except preload-dispvm-max.
func (a *App) PrepareBackupCopy(paths map[string]string, sizes map[string]int64) {
	for _, d := range a.domains {
		var keep []Feature
		for _, f := range d.Features {
			if strings.HasPrefix(f.Name, "preload-dispvm") && f.Name != "preload-dispvm-max" {
				continue
			}
			keep = append(keep, f)
		}
		d.Features = keep
		if p, ok := paths[d.Name()]; ok {
			d.setFeature("backup-content", "1")
			d.setFeature("backup-path", p)
			d.setFeature("backup-size", intValue(sizes[d.Name()]).S)
		} else {
			d.setFeature("backup-content", "")
			d.deleteFeature("backup-path")
			d.deleteFeature("backup-size")
		}
	}
}

// SetBackupTimestamp records a finished backup on a qube. A class
// without the property (AdminVM, spec state.md §5.9) gets nothing:
// writing it would put an unknown property into its entry, which a real
// qubesd would not load.
func (a *App) SetBackupTimestamp(d *Domain, unix int64) {
	if _, err := lookupProp(d, "backup_timestamp"); err != nil {
		return
	}
	d.props["backup_timestamp"] = intValue(unix)
}
