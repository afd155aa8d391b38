package devices

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/qvm-dev/qvm/core"
)

// Hypervisor is what attachment needs from libvirt; the caller provides
// it (core/virt on a host, a fake in unit tests).
type Hypervisor interface {
	// Running lists the names of running domains (dom0 excluded).
	Running(ctx context.Context) ([]string, error)
	// LiveXML is the running domain's current XML.
	LiveXML(ctx context.Context, vm string) (string, error)
	AttachDevice(ctx context.Context, vm, xml string) error
	DetachDevice(ctx context.Context, vm, xml string) error
	// Flavor tells which XML shape the driver takes.
	Flavor() Flavor
}

// Halted is the hypervisor of a host where nothing but dom0 runs (no
// libvirt connection): every attach is refused as the qube is not running.
type Halted struct{}

// Running implements Hypervisor.
func (Halted) Running(context.Context) ([]string, error) { return nil, nil }

// LiveXML implements Hypervisor.
func (Halted) LiveXML(_ context.Context, vm string) (string, error) {
	return "", fmt.Errorf("%s is not running", vm)
}

// AttachDevice implements Hypervisor.
func (Halted) AttachDevice(_ context.Context, vm, _ string) error {
	return fmt.Errorf("%s is not running", vm)
}

// DetachDevice implements Hypervisor.
func (Halted) DetachDevice(_ context.Context, vm, _ string) error {
	return fmt.Errorf("%s is not running", vm)
}

// Flavor implements Hypervisor.
func (Halted) Flavor() Flavor { return Xen }

// Manager ties state, discovery and the hypervisor together for the
// operations of qvm device.
type Manager struct {
	App  *core.App
	Disc *Discoverer
	HV   Hypervisor
	// S0ix: dom0 feature suspend-s0ix (PCI power management filtering off).
	S0ix bool
}

// Attachment is a live attachment of a device to a running qube.
type Attachment struct {
	Attached
	VM string
}

// IsRunning tells whether a qube runs (dom0 always does).
func (m *Manager) IsRunning(ctx context.Context, vm string) (bool, error) {
	if vm == "dom0" {
		return true, nil
	}
	names, err := m.HV.Running(ctx)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if n == vm {
			return true, nil
		}
	}
	return false, nil
}

// Attachments lists what is attached to running qubes, for one class
// ("" all), in the order of the qubes' names.
func (m *Manager) Attachments(ctx context.Context, class string) ([]Attachment, error) {
	names, err := m.HV.Running(ctx)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Attachment
	for _, vm := range names {
		as, _, err := m.attachedTo(ctx, vm)
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			if class == "" || a.Class == class {
				out = append(out, Attachment{Attached: a, VM: vm})
			}
		}
	}
	return out, nil
}

func (m *Manager) attachedTo(ctx context.Context, vm string) ([]Attached, []string, error) {
	x, err := m.HV.LiveXML(ctx, vm)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", vm, err)
	}
	return ParseLiveXML(x, m.Disc.Sys, m.usbPort)
}

func (m *Manager) usbPort(bus, dev int) string {
	ds, _ := m.Disc.USBDevices()
	for _, d := range ds {
		if kv(d.Extra, "busnum") == fmt.Sprint(bus) && kv(d.Extra, "devnum") == fmt.Sprint(dev) {
			return d.ID
		}
	}
	return ""
}

func kv(list []KV, k string) string {
	for _, x := range list {
		if x.Key == k {
			return x.Value
		}
	}
	return ""
}

// CheckOptions validates and normalises the options of a class (spec §6.3,
// §7): block read-only becomes yes/no, unknown options are refused.
func CheckOptions(class string, opts []core.Opt) ([]core.Opt, error) {
	out := make([]core.Opt, 0, len(opts))
	for _, o := range opts {
		switch {
		case class == Block && o.Key == "read-only":
			b, err := core.ParseBool(o.Value)
			if err != nil {
				return nil, errorf("read-only option must be a boolean, got %q", o.Value)
			}
			o.Value = "no"
			if b {
				o.Value = "yes"
			}
		case class == Block && o.Key == "frontend-dev":
			if !strings.HasPrefix(o.Value, "xvd") && !strings.HasPrefix(o.Value, "sd") {
				return nil, errorf("frontend-dev option must start with 'xvd' or 'sd', got %q", o.Value)
			}
		case class == Block && o.Key == "devtype":
			if o.Value != "disk" && o.Value != "cdrom" {
				return nil, errorf("devtype option can only have 'disk' or 'cdrom' value")
			}
		case class == PCI && (o.Key == "no-strict-reset" || o.Key == "permissive"):
		default:
			return nil, errorf("Unsupported option %s", o.Key)
		}
		replaced := false
		for i := range out {
			if out[i].Key == o.Key {
				out[i].Value, replaced = o.Value, true
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out, nil
}

func optValue(opts []core.Opt, k string) (string, bool) {
	for _, o := range opts {
		if o.Key == k {
			return o.Value, true
		}
	}
	return "", false
}

// Attach attaches a device to a running qube now (mode manual: nothing is
// stored). The checks are the reference's, in its order.
func (m *Manager) Attach(ctx context.Context, vm *core.Domain, dev *Device, opts []core.Opt) error {
	running, err := m.IsRunning(ctx, vm.Name())
	if err != nil {
		return err
	}
	if dev.Class == PCI && vm.Class == "AdminVM" {
		return errorf("Can't attach PCI device to dom0")
	}
	if !running {
		return errorf("VM not running, cannot attach device, do you mean 'assign'?")
	}
	opts, err = CheckOptions(dev.Class, opts)
	if err != nil {
		return err
	}
	if ifc := DeniedInterface(m.App, vm, dev); ifc != "" {
		return errorf("Device exposes a banned interface: %s", ifc)
	}
	if ok, err := m.IsRunning(ctx, dev.Backend); err != nil {
		return err
	} else if !ok {
		return errorf("Domain %s needs to be running to attach device from it", dev.Backend)
	}
	all, err := m.Attachments(ctx, dev.Class)
	if err != nil {
		return err
	}
	for _, a := range all {
		if a.Port == dev.Port {
			if a.VM == vm.Name() {
				return errorf("device %s of class %s already attached to %s", dev.Port, dev.Class, vm.Name())
			}
			return errorf("Device %s already attached to %s", dev.Port, a.VM)
		}
	}
	x, err := m.deviceXML(ctx, vm, dev, opts)
	if err != nil {
		return err
	}
	if err := m.HV.AttachDevice(ctx, vm.Name(), x); err != nil {
		return fmt.Errorf("attach %s to %s: %w", dev.Port, vm.Name(), err)
	}
	return nil
}

func (m *Manager) deviceXML(ctx context.Context, vm *core.Domain, dev *Device, opts []core.Opt) (string, error) {
	switch dev.Class {
	case PCI:
		mode, _ := m.App.Get(vm, "virt_mode")
		if strings.EqualFold(mode.S, "pvh") {
			return "", errorf("Can't attach PCI device to VM in pvh mode")
		}
		a, ok := m.Disc.Sys.PathToSBDF(dev.ID)
		if !ok {
			return "", errorf("Invalid PCI device: %s", dev.ID)
		}
		nsr, _ := optValue(opts, "no-strict-reset")
		perm, _ := optValue(opts, "permissive")
		return HostdevPCIXML(m.HV.Flavor(), a, nsr != "", perm != "", m.S0ix), nil
	case Block:
		o := BlockOptions{DevType: "disk", ReadOnly: dev.ReadOnly}
		if v, ok := optValue(opts, "devtype"); ok {
			o.DevType = v
		}
		if v, ok := optValue(opts, "read-only"); ok {
			if v == "no" && dev.ReadOnly {
				return "", errorf("This device can be attached only read-only")
			}
			o.ReadOnly = v == "yes"
		}
		if v, ok := optValue(opts, "frontend-dev"); ok {
			o.FrontendDev = v
		} else {
			_, used, err := m.attachedTo(ctx, vm.Name())
			if err != nil {
				return "", err
			}
			f, ok := FreeFrontend(used, o.DevType == "cdrom")
			if !ok {
				return "", errorf("No unused frontend found")
			}
			o.FrontendDev = f
		}
		return DiskXML(m.HV.Flavor(), dev.DevPath, dev.Backend, o), nil
	case USB:
		var bus, num int
		fmt.Sscan(kv(dev.Extra, "busnum"), &bus)
		fmt.Sscan(kv(dev.Extra, "devnum"), &num)
		return HostdevUSBXML(bus, num), nil
	}
	return "", errorf("Cannot attach %s devices", dev.Class)
}

// Detach detaches a device from a running qube. A required assignment
// that matches keeps the device attached (unassign it first).
func (m *Manager) Detach(ctx context.Context, vm *core.Domain, port Port) error {
	running, err := m.IsRunning(ctx, vm.Name())
	if err != nil {
		return err
	}
	if !running {
		return errorf("device %s of class %s not attached to %s", port, port.Class, vm.Name())
	}
	as, _, err := m.attachedTo(ctx, vm.Name())
	if err != nil {
		return err
	}
	for _, a := range as {
		if a.Port != port {
			continue
		}
		dev, _ := m.Disc.Lookup(port.Class, port.ID)
		if dev == nil {
			dev = &Device{Port: port, DeviceID: Any}
		}
		for _, asg := range Assignments(vm, port.Class) {
			if asg.Mode == Required && asg.Matches(dev) {
				return errorf("Can not detach a required device from a non halted qube. You need to unassign device first.")
			}
		}
		if err := m.HV.DetachDevice(ctx, vm.Name(), a.XML); err != nil {
			return fmt.Errorf("detach %s from %s: %w", port, vm.Name(), err)
		}
		return nil
	}
	return errorf("device %s of class %s not attached to %s", port, port.Class, vm.Name())
}

// StartConfig resolves the required assignments of a qube before it
// starts: each must match a present device, else the start fails with the
// reference's message. It returns the <disk> elements of the required
// block devices, to put into the domain config so they are there from
// boot (required PCI devices are rendered by the domain spec itself).
func (m *Manager) StartConfig(vm *core.Domain) ([]string, error) {
	var out []string
	used := []string{"xvda", "xvdb", "xvdc", "xvdd"}
	for _, class := range Classes() {
		for _, a := range Assignments(vm, class) {
			if a.Mode != Required {
				continue
			}
			dev := m.resolve(a)
			if dev == nil {
				return nil, errorf("%s device %s not available", titleCase(class), a.VirtualDevice)
			}
			if class != Block {
				continue
			}
			var o BlockOptions
			o.ReadOnly = dev.ReadOnly
			if v, ok := a.Option("read-only"); ok {
				b, _ := core.ParseBool(v)
				o.ReadOnly = o.ReadOnly || b
			}
			o.DevType, _ = a.Option("devtype")
			o.FrontendDev, _ = a.Option("frontend-dev")
			if o.FrontendDev == "" {
				o.FrontendDev, _ = FreeFrontend(used, o.DevType == "cdrom")
			}
			used = append(used, o.FrontendDev)
			out = append(out, DiskXML(m.HV.Flavor(), dev.DevPath, dev.Backend, o))
		}
	}
	return out, nil
}

// AutoAttach attaches, after a qube started, the devices of its
// non-required block and usb assignments that are present and not
// attached elsewhere, most specific assignment first. ask-to-attach is
// treated as auto-attach here (there is no GUI to ask). It returns what
// it attached; failures of single devices are reported, not fatal.
func (m *Manager) AutoAttach(ctx context.Context, vm *core.Domain, warn func(string)) []Port {
	var done []Port
	for _, class := range []string{Block, USB} {
		ds, err := m.Disc.List(class)
		if err != nil {
			warn(err.Error())
			continue
		}
		for _, a := range Assignments(vm, class) {
			if a.Mode == Required {
				continue
			}
			for _, d := range ds {
				if !a.Matches(d) || containsPort(done, d.Port) {
					continue
				}
				if err := m.Attach(ctx, vm, d, a.Options); err != nil {
					warn(fmt.Sprintf("%s: %s", d.Port, err))
					continue
				}
				done = append(done, d.Port)
			}
		}
	}
	return done
}

func containsPort(ps []Port, p Port) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// resolve finds the device an assignment stands for (dom0 backends only:
// the devices of other backends live in their QubesDB).
func (m *Manager) resolve(a *Assignment) *Device {
	if a.Backend != Backend {
		return nil
	}
	if a.ID != Any {
		d, ok := m.Disc.Lookup(a.Class, a.ID)
		if ok && (a.DeviceID == Any || d.DeviceID == a.DeviceID) {
			return d
		}
		return nil
	}
	ds, _ := m.Disc.List(a.Class)
	for _, d := range ds {
		if a.Matches(d) {
			return d
		}
	}
	return nil
}

func titleCase(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
