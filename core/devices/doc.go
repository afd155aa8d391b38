// Package devices owns the device buses of qvm (pci, block, usb): the
// identity of a device (backend domain, port id, device id), assignments
// and their modes and options, discovery from sysfs, the PCI path <-> SBDF
// conversion, and the libvirt hot-plug XML for attaching a device to a
// running qube.
//
// Assignments are stored as data in core (core.DeviceAssignment, written
// to qubes.xml by core's save code); this package gives them meaning. It
// never talks to libvirt itself: attachment goes through the Hypervisor
// interface that the caller provides.
package devices
