// Package virt is qvm's hypervisor layer: one libvirt connection per
// command, to Xen on a Qubes host, to a running libvirtd on a KVM/QEMU host,
// or to libvirt's embedded QEMU driver (no daemon) anywhere else.
//
// It owns the choice of the connection URI, the lock that keeps the
// embedded driver's root to one process at a time (libvirt itself keeps an
// embedded root until the process exits, so a process opens it once), the
// small set of domain operations qvm needs (define, create paused, resume,
// pause, shutdown, destroy, power state) and the domain XML: spec.go
// computes a Spec from a qube by the reference's rules (spec/start.md §4),
// xml.go lays it out for Xen or for QEMU/KVM.
//
// It reads core's model but changes nothing in it, and it does not touch
// storage: callers pass the volumes' block devices in SpecInput.
//
//	c, err := virt.Open(ctx, virt.Config{URI: "", StateDir: "/var/lib/qubes"})
//	defer c.Close()                     // releases the embedded root's lock
//	states, _ := c.States(ctx)          // name → Running, Paused, …
//	spec, _ := virt.NewSpec(app, d, virt.SpecInput{VolumeDisk: ...})
//	_, err = c.CreatePaused(c.DomainXML(spec, virt.QEMUOptions{}))
//	err = c.Resume(d.Name())
package virt
