// Package virt is qvm's hypervisor layer: one libvirt connection per
// command, to Xen on a Qubes host, to a running libvirtd on a KVM/QEMU host,
// or to libvirt's embedded QEMU driver (no daemon) anywhere else.
//
// This package needs neither cgo nor libvirt. The connection itself lives
// in a helper process, qvm-virt (cmd/qvm-virt, core/virt/lvconn), which
// Open starts and talks to over a pipe (helper.go): loading libvirt.so
// costs every process that links it about 15 ms and 15 MiB, most qvm
// commands never talk to the hypervisor, and the embedded driver, once
// loaded, stays in its process until that exits, so a helper that exits
// with the command releases it.
//
// It owns the choice of the connection URI, the lock that keeps the
// embedded driver's root to one process at a time (qvm holds it from Open
// to Close, its helper loads the driver under it; Release lets the driver
// go while the lock stays, for qmemmand), the small set of domain operations qvm
// needs (define, create paused, resume, pause, shutdown, destroy, power
// state, device hot-plug) and the domain XML: spec.go computes a Spec from
// a qube by the reference's rules (spec/start.md §4), xml.go lays it out
// for Xen or for QEMU/KVM. Errors keep their types across the pipe
// (NotRunningError, LockTimeoutError, libvirt's Error).
//
// It reads core's model but changes nothing in it, and it does not touch
// storage: callers pass the volumes' block devices in SpecInput.
//
//	c, err := virt.Open(ctx, virt.Config{URI: "", StateDir: "/var/lib/qubes"})
//	defer c.Close()                     // the helper exits, the lock is free
//	states, _ := c.States(ctx)          // name → Running, Paused, …
//	spec, _ := virt.NewSpec(app, d, virt.SpecInput{VolumeDisk: ...})
//	_, err = c.CreatePaused(ctx, c.DomainXML(spec, virt.QEMUOptions{}))
//	err = c.Resume(ctx, d.Name())
package virt
