package devices

import (
	"sort"
	"strings"

	"github.com/qvm-dev/qvm/core"
)

// Assignment modes. Manual is a live attachment only and is never stored.
const (
	Manual      = "manual"
	AutoAttach  = "auto-attach"
	AskToAttach = "ask-to-attach"
	Required    = "required"
)

// ValidStoredMode reports whether mode may be written to qubes.xml.
func ValidStoredMode(mode string) bool {
	return mode == AutoAttach || mode == AskToAttach || mode == Required
}

// Assignment is a device assignment of one qube.
type Assignment struct {
	VirtualDevice
	Mode    string
	Options []core.Opt
}

// Matches reports whether the assignment covers the device.
func (a *Assignment) Matches(d *Device) bool {
	return a.Class == d.Class && a.Backend == d.Backend &&
		(a.ID == Any || a.ID == d.ID) && (a.DeviceID == Any || a.DeviceID == d.DeviceID)
}

// Option returns an option value.
func (a *Assignment) Option(k string) (string, bool) {
	for _, o := range a.Options {
		if o.Key == k {
			return o.Value, true
		}
	}
	return "", false
}

// specificity orders assignments most specific first: port+device, port
// only, device only.
func (a *Assignment) specificity() int {
	switch {
	case a.ID != Any && a.DeviceID != Any:
		return 0
	case a.ID != Any:
		return 1
	}
	return 2
}

// Assignments lists the stored assignments of one class of a qube, most
// specific first (the order that decides which one wins).
func Assignments(d *core.Domain, class string) []*Assignment {
	c := d.DeviceClass(class)
	if c == nil {
		return nil
	}
	out := make([]*Assignment, 0, len(c.Devices))
	for _, da := range c.Devices {
		out = append(out, fromCore(class, da))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].specificity() < out[j].specificity() })
	return out
}

func fromCore(class string, da *core.DeviceAssignment) *Assignment {
	return &Assignment{
		VirtualDevice: VirtualDevice{Port: Port{Backend: da.Backend, ID: da.Port, Class: class}, DeviceID: da.Identity},
		Mode:          da.Mode,
		Options:       append([]core.Opt(nil), da.Options...),
	}
}

// Assign stores an assignment. The checks are the reference's: only
// automatically attached modes, no duplicate, not both wildcards, and the
// PCI rules (pci only as required, never to dom0).
func Assign(app *core.App, d *core.Domain, a *Assignment) error {
	if !ValidStoredMode(a.Mode) {
		return errorf("Only auto-attachable devices can be assigned.")
	}
	if a.ID == Any && a.DeviceID == Any {
		return errorf("Cannot assign a device with both port and device id '*'")
	}
	if a.Backend != "" {
		if _, err := app.Domain(a.Backend); err != nil {
			return errorf("no such backend vm!")
		}
	}
	if a.Class == PCI {
		if d.Class == "AdminVM" {
			return errorf("Can't attach PCI device to dom0")
		}
		if a.Mode != Required {
			return errorf("PCI devices cannot be assigned as not required.")
		}
		// A qube with PCI devices runs as HVM; an explicit pvh would only
		// fail at start, so say it now.
		if v, ok := d.Explicit("virt_mode"); ok && strings.EqualFold(v.S, "pvh") {
			return errorf("Can't attach PCI device to VM in pvh mode")
		}
	}
	if a.Class == USB && a.Mode == Required {
		return errorf("Only pci and block devices can be assigned as required.")
	}
	c := d.DeviceClass(a.Class)
	if c == nil {
		c = &core.DeviceClass{Class: a.Class}
		d.Devices = append(d.Devices, c)
	}
	for _, o := range c.Devices {
		if o.Backend == a.Backend && o.Port == a.ID && o.Identity == a.DeviceID {
			return errorf("device %s of class %s already assigned to %s", a.VirtualDevice, a.Class, d.Name())
		}
	}
	c.Devices = append(c.Devices, &core.DeviceAssignment{
		Backend: a.Backend, Port: a.ID, Mode: a.Mode, Identity: a.DeviceID,
		Options: append([]core.Opt(nil), a.Options...),
	})
	return nil
}

// Unassign removes the assignment with exactly this backend, port and
// device id.
func Unassign(d *core.Domain, v VirtualDevice) error {
	c := d.DeviceClass(v.Class)
	if c != nil {
		for i, o := range c.Devices {
			if o.Backend == v.Backend && o.Port == v.ID && o.Identity == v.DeviceID {
				c.Devices = append(c.Devices[:i], c.Devices[i+1:]...)
				dropEmpty(d)
				return nil
			}
		}
	}
	return errorf("device %s of class %s not assigned to %s", v, v.Class, d.Name())
}

// UnassignAll removes every assignment of a class and returns them.
func UnassignAll(d *core.Domain, class string) []*Assignment {
	out := Assignments(d, class)
	if c := d.DeviceClass(class); c != nil {
		c.Devices = nil
	}
	dropEmpty(d)
	return out
}

func dropEmpty(d *core.Domain) {
	keep := d.Devices[:0]
	for _, c := range d.Devices {
		if len(c.Devices) > 0 {
			keep = append(keep, c)
		}
	}
	d.Devices = keep
}

// SetMode changes the mode of an existing assignment, keeping its options.
func SetMode(d *core.Domain, v VirtualDevice, mode string) error {
	if mode == Manual {
		return errorf("Cannot change assignment mode to 'manual'")
	}
	if !ValidStoredMode(mode) {
		return errorf("Invalid assignment mode")
	}
	if c := d.DeviceClass(v.Class); c != nil {
		for _, o := range c.Devices {
			if o.Backend == v.Backend && o.Port == v.ID && o.Identity == v.DeviceID {
				if v.Class == PCI && mode != Required {
					return errorf("PCI devices cannot be assigned as not required.")
				}
				o.Mode = mode
				return nil
			}
		}
	}
	return errorf("Device %s not assigned to %s", v, d.Name())
}

// DeniedInterface returns the first interface of the device that matches
// the qube's devices_denied list ("" when none).
func DeniedInterface(app *core.App, d *core.Domain, dev *Device) Interface {
	v, err := app.Get(d, "devices_denied")
	if err != nil || v.S == "" {
		return ""
	}
	s := v.S
	for i := 0; i+7 <= len(s); i += 7 {
		p := Interface(s[i : i+7])
		for _, ifc := range dev.Interfaces {
			if p.Matches(ifc) {
				return ifc
			}
		}
	}
	return ""
}

// FormatOptions renders options as "k=v, k=v" for list output.
func FormatOptions(opts []core.Opt) string {
	parts := make([]string, 0, len(opts))
	for _, o := range opts {
		parts = append(parts, o.Key+"="+o.Value)
	}
	return strings.Join(parts, ", ")
}
