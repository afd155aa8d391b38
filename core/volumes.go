package core

// StandardVolumes is the order volumes are written in.
var standardVolumes = []string{"root", "private", "volatile", "kernel"}

// classVolume gives the class default of one standard volume.
func classVolume(class, name string) *VolumeConfig {
	v := &VolumeConfig{Name: name}
	switch name {
	case "root":
		v.RW = true
		if class == "AppVM" || class == "DispVM" {
			v.SnapOnStart = true
		} else {
			v.SaveOnStop = true
			v.Size = RootImgSize
		}
	case "private":
		v.RW = true
		if class == "DispVM" {
			v.SnapOnStart = true
		} else {
			v.SaveOnStop = true
			v.Size = PrivateImgSize
		}
	case "volatile":
		v.RW = true
		v.Size = RootImgSize
		if class == "DispVM" {
			v.Size = RootImgSize + PrivateImgSize
		}
	case "kernel":
	}
	return v
}

func dirPrefix(class string) string {
	if class == "TemplateVM" {
		return "vm-templates"
	}
	return "appvms"
}

// VMDir is the qube's directory under the state dir.
func (a *App) VMDir(d *Domain) string {
	return a.StateDir + "/" + dirPrefix(d.Class) + "/" + d.Name()
}

// vidFor names a new volume the way its pool's driver does.
func (a *App) vidFor(d *Domain, pool *PoolConfig, volume string) string {
	if pool == nil {
		return ""
	}
	switch pool.Driver {
	case "lvm_thin":
		vg, _ := pool.Get("volume_group")
		return vg + "/vm-" + d.Name() + "-" + volume
	case "linux-kernel":
		k, _ := a.Get(d, "kernel")
		return k.S
	}
	return dirPrefix(d.Class) + "/" + d.Name() + "/" + volume
}

// poolRevisions is the revisions_to_keep a new volume gets from its pool.
func poolRevisions(pool *PoolConfig, v *VolumeConfig) int64 {
	if pool == nil {
		return 1
	}
	switch pool.Driver {
	case "linux-kernel":
		return 0
	case "file":
		if !v.SaveOnStop {
			return 0
		}
	}
	if s, ok := pool.Get("revisions_to_keep"); ok {
		if n, err := parseInt(s); err == nil {
			return n
		}
	}
	return 1
}

// resolveSource points a snapshot volume at the volume it snapshots: the
// same-named volume of the template, following templates while that volume
// is itself a snapshot.
func (a *App) resolveSource(d *Domain, v *VolumeConfig) {
	for t, n := a.template(d), 0; t != nil && n < 16; t, n = a.template(t), n+1 {
		src := t.Volume(v.Name)
		if src == nil {
			return
		}
		v.Source, v.Pool, v.Size = src.Vid, src.Pool, src.Size
		if src.Source == "" {
			return
		}
	}
}

// refreshSources re-points snapshot volumes after a template change.
func (a *App) refreshSources(d *Domain) {
	for _, v := range d.Volumes {
		if v.SnapOnStart {
			a.resolveSource(d, v)
		}
	}
}

// VolumeOpts are per-volume choices at creation: pool for all volumes or per volume.
type VolumeOpts struct {
	Pool  string            // all rw, non-snapshot volumes
	Pools map[string]string // volume name -> pool
}

// initVolumes builds a new qube's volume config from class defaults.
func (a *App) initVolumes(d *Domain, opts VolumeOpts) error {
	d.Volumes = nil
	for _, name := range standardVolumes {
		v := classVolume(d.Class, name)
		poolName := ""
		if p, ok := opts.Pools[name]; ok {
			if v.SnapOnStart {
				return valueErrorf("Snapshot volume %s must be in the same pool as its origin (%s volume of template),cannot move to pool %s ", name, name, p)
			}
			poolName = p
		} else if opts.Pool != "" && v.RW && !v.SnapOnStart {
			poolName = opts.Pool
		}
		if poolName == "" {
			pv, err := a.Get(nil, "default_pool_"+name)
			if err != nil {
				return err
			}
			poolName = pv.S
		}
		if a.Pool(poolName) == nil {
			return valueErrorf("No such storage pool: %s", poolName)
		}
		v.Pool = poolName
		if v.SnapOnStart {
			a.resolveSource(d, v)
		}
		pool := a.Pool(v.Pool)
		v.Vid = a.vidFor(d, pool, name)
		v.RevisionsToKeep = poolRevisions(pool, v)
		d.Volumes = append(d.Volumes, v)
	}
	// Extra volumes of the template are inherited (without their vid).
	if t := a.template(d); t != nil {
		for _, tv := range t.Volumes {
			if d.Volume(tv.Name) != nil {
				continue
			}
			v := *tv
			v.Source = ""
			pool := a.Pool(v.Pool)
			v.Vid = a.vidFor(d, pool, v.Name)
			d.Volumes = append(d.Volumes, &v)
		}
	}
	return nil
}
