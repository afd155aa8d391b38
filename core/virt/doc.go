// Package virt is qvm's hypervisor layer: one libvirt connection per
// command, to Xen on a Qubes host, to a running libvirtd on a KVM/QEMU host,
// or to libvirt's embedded QEMU driver (no daemon) anywhere else.
//
// It owns the choice of the connection URI, the lock that keeps the
// embedded driver's root to one process at a time, and the small set of
// domain operations qvm needs (define, create paused, resume, shutdown,
// destroy, power state). It knows nothing of qubes.xml: callers pass names
// and XML. Rendering the domain XML lives in xml.go and takes plain values.
package virt
