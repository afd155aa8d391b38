// Package stategen builds large, realistic states for benchmarks and
// stress tests: templates, network qubes, disposable templates and many
// AppVMs with features and tags, as a user with that many qubes would have.
package stategen

import (
	"fmt"

	"github.com/qvm-dev/qvm/core"
)

// Generate returns a state with n qubes besides dom0.
func Generate(stateDir string, n int) (*core.App, error) {
	a := core.NewInitial(stateDir, core.Host{MemMiB: 32000, CPUs: 8}, true)
	labels := []string{"red", "orange", "yellow", "green", "gray", "blue", "purple", "black"}
	must := func(d *core.Domain, err error) (*core.Domain, error) { return d, err }
	templates := []string{"fedora-41", "debian-12", "fedora-41-minimal", "whonix-gw-17"}
	made := 0
	for _, t := range templates {
		d, err := must(a.Create(core.CreateOpts{Class: "TemplateVM", Name: t, Label: "black"}))
		if err != nil {
			return nil, err
		}
		for _, f := range [][2]string{{"qrexec", "1"}, {"gui", "1"}, {"os", "Linux"}, {"supported-service.meminfo-writer", "1"}} {
			if err := a.SetFeature(d, f[0], f[1]); err != nil {
				return nil, err
			}
		}
		made++
	}
	if err := a.Set(nil, "default_template", "fedora-41"); err != nil {
		return nil, err
	}
	net, err := a.Create(core.CreateOpts{Class: "AppVM", Name: "sys-net", Label: "red"})
	if err != nil {
		return nil, err
	}
	fw, err := a.Create(core.CreateOpts{Class: "AppVM", Name: "sys-firewall", Label: "green"})
	if err != nil {
		return nil, err
	}
	for _, step := range []error{
		a.Set(net, "provides_network", "True"), a.SetNone(net, "netvm"),
		a.Set(fw, "provides_network", "True"), a.Set(fw, "netvm", "sys-net"),
		a.Set(nil, "default_netvm", "sys-firewall"),
	} {
		if step != nil {
			return nil, step
		}
	}
	dvm, err := a.Create(core.CreateOpts{Class: "AppVM", Name: "default-dvm", Label: "red"})
	if err != nil {
		return nil, err
	}
	if err := a.Set(dvm, "template_for_dispvms", "True"); err != nil {
		return nil, err
	}
	if err := a.Set(nil, "default_dispvm", "default-dvm"); err != nil {
		return nil, err
	}
	made += 3
	for i := 0; made < n; i++ {
		d, err := a.Create(core.CreateOpts{Class: "AppVM", Name: fmt.Sprintf("qube-%04d", i), Label: labels[i%len(labels)],
			Template: templates[i%len(templates)]})
		if err != nil {
			return nil, err
		}
		if i%3 == 0 {
			if err := a.Set(d, "memory", fmt.Sprint(400+i%7*100)); err != nil {
				return nil, err
			}
		}
		if i%5 == 0 {
			if err := a.SetFeature(d, "service.cups", "1"); err != nil {
				return nil, err
			}
			if err := a.AddTag(d, "work"); err != nil {
				return nil, err
			}
		}
		made++
	}
	return a, nil
}
