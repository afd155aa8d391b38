package core

// Accessors the hypervisor layer (core/virt) and the start/stop commands
// need; the rules themselves stay in this package.

// KernelDir is the directory of kernel VERSION in the linux-kernel pool.
func (a *App) KernelDir(version string) string { return a.kernelDir(version) }

// FeatureWithTemplate looks a feature up in d, then along its template chain.
func (a *App) FeatureWithTemplate(d *Domain, name string) (string, bool) {
	return a.checkWithTemplate(d, name)
}

// FeatureWithNetvm looks a feature up in d, then along its netvm chain.
func (a *App) FeatureWithNetvm(d *Domain, name string) (string, bool) {
	return a.checkWithNetvm(d, name)
}

// Netvm is the qube d's netvm, nil when it has none.
func (a *App) Netvm(d *Domain) *Domain { return a.netvmOf(d) }

// Template is the qube d's template, nil when it has none.
func (a *App) Template(d *Domain) *Domain { return a.template(d) }

// TemplateForDispvms reports whether d may serve as a disposable template.
func (a *App) TemplateForDispvms(d *Domain) bool { return a.templateForDispvms(d) }

// VolumeOrder lists d's volumes in the order their disks are attached:
// root, private, volatile, kernel, then the others as saved.
func VolumeOrder(d *Domain) []*VolumeConfig {
	var out []*VolumeConfig
	for _, n := range standardVolumes {
		if v := d.Volume(n); v != nil {
			out = append(out, v)
		}
	}
	for _, v := range d.Volumes {
		std := false
		for _, n := range standardVolumes {
			std = std || v.Name == n
		}
		if !std {
			out = append(out, v)
		}
	}
	return out
}
