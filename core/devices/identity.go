package devices

import (
	"fmt"
	"sort"
	"strings"
)

// Buses this package knows how to discover and attach.
const (
	PCI   = "pci"
	Block = "block"
	USB   = "usb"
)

// Classes lists the device classes, as --list-device-classes prints them.
func Classes() []string { return []string{Block, PCI, USB} }

// KnownClass reports whether class is one of Classes.
func KnownClass(class string) bool {
	switch class {
	case PCI, Block, USB:
		return true
	}
	return false
}

// Any is the wildcard for a port id or a device id.
const Any = "*"

// Port is where a device is plugged: backend domain + port id of a class.
type Port struct {
	Backend string
	ID      string
	Class   string
}

func (p Port) String() string { return p.Backend + ":" + p.ID }

// VirtualDevice is a port plus the device id expected in it; either may be
// the wildcard, not both.
type VirtualDevice struct {
	Port
	DeviceID string
}

func (v VirtualDevice) String() string {
	if v.DeviceID == "" || v.DeviceID == Any && v.ID != Any {
		return v.Port.String()
	}
	return v.Port.String() + ":" + v.DeviceID
}

// ParseDeviceArg splits BACKEND:PORT[:DEVID]. The device id may itself
// contain colons (pci ids do), so everything after the second colon is it.
func ParseDeviceArg(class, arg string) (VirtualDevice, error) {
	parts := strings.SplitN(arg, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" || len(parts) == 3 && parts[2] == "" {
		return VirtualDevice{}, &ArgError{Msg: "expected a backend vm, port id and [optional] device id combination like foo:bar[:baz] got " + arg}
	}
	v := VirtualDevice{Port: Port{Backend: parts[0], ID: parts[1], Class: class}}
	if len(parts) == 3 {
		v.DeviceID = parts[2]
	}
	return v, nil
}

// Interface is a 7-character interface code: class letter + 6 hex digits
// (class, subclass, programming interface), '*' as wildcard.
type Interface string

// Unknown is the interface of a device that says nothing about itself.
const Unknown Interface = "?******"

// Matches reports whether the pattern p (with '*') matches code c.
func (p Interface) Matches(c Interface) bool {
	if len(p) != 7 || len(c) != 7 {
		return false
	}
	for i := 0; i < 7; i++ {
		if p[i] != '*' && p[i] != c[i] {
			return false
		}
	}
	return true
}

type categoryRule struct {
	name     string
	patterns []Interface
}

// categories in the reference's order; the best match is the one with the
// most fixed characters, the first listed on a tie.
var categories = []categoryRule{
	{"Network", []Interface{"u02****", "p0703**", "p02****", "ue0****"}},
	{"Keyboard", []Interface{"u03**01", "p0900**"}},
	{"Mouse", []Interface{"u03**02", "p0902**"}},
	{"Input", []Interface{"u03****", "p09****"}},
	{"Printer", []Interface{"u07****"}},
	{"Camera", []Interface{"p0903**", "u06****", "u0e****"}},
	{"Microphone", []Interface{"m******"}},
	{"Audio", []Interface{"p0403**", "p0401**", "p0408**", "u01****", "m******"}},
	{"Display", []Interface{"p0300**", "p0380**"}},
	{"Multimedia", []Interface{"u10****", "p03****", "p04****"}},
	{"USB_Storage", []Interface{"u08****"}},
	{"Block_Storage", []Interface{"b******"}},
	{"Storage", []Interface{"b******", "u08****", "p01****"}},
	{"Bluetooth", []Interface{"ue00101", "p0d11**"}},
	{"Smart_Card_Readers", []Interface{"u0b****"}},
	{"Memory", []Interface{"p05****"}},
	{"PCI_Bridge", []Interface{"p06****"}},
	{"Docking_Station", []Interface{"p0a****"}},
	{"Processor", []Interface{"p0b****", "p40****"}},
	{"PCI_USB", []Interface{"p0c03**"}},
	{"PCI_Serial_Bus", []Interface{"p0c****"}},
}

// Category names the kind of device an interface code describes
// ("Other" when no rule matches).
func Category(c Interface) string {
	best, bestScore := "Other", -1
	for _, r := range categories {
		for _, p := range r.patterns {
			if !p.Matches(c) {
				continue
			}
			score := 7 - strings.Count(string(p), "*")
			if score > bestScore {
				best, bestScore = r.name, score
			}
		}
	}
	return best
}

// sanitizeID keeps [0-9A-Za-z._-] and turns everything else into '_', as
// the reference does for the parts of a device id.
func sanitizeID(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// KV is one item of a device's extra data, kept in order.
type KV struct{ Key, Value string }

// Device is one discovered device.
type Device struct {
	Port
	DeviceID   string
	Interfaces []Interface
	Vendor     string // vendor name ("" unknown)
	Product    string // product name ("" unknown)
	Name       string // block: label; usb: product string
	Serial     string
	Parent     string // port id of the parent device, if any
	Size       int64  // block: bytes
	ReadOnly   bool   // block: the device is read-only
	DevPath    string // block: /dev node
	Extra      []KV   // shown by info (sbdf, size, mode, ...)
	// ClassName is the pci.ids/usb.ids name of the class ("" unknown).
	ClassName string
}

// Description is what list and info show: "<category>: <vendor> <product>".
func (d *Device) Description() string {
	var ifc string
	if d.Class == Block {
		ifc = "Block_Storage"
	} else if len(d.Interfaces) > 0 {
		ifc = Category(d.Interfaces[0])
		if ifc == "Other" {
			ifc = d.ClassName
			if ifc == "" {
				ifc = string(d.Interfaces[0])
			}
		}
	} else {
		ifc = string(Unknown)
	}
	prod := d.Product
	switch {
	case prod != "" && prod != "unknown":
	case d.Name != "" && d.Name != "unknown":
		prod = d.Name
	case d.Serial != "" && d.Serial != "unknown":
		prod = d.Serial
	case d.Parent != "":
		return ifc + ": sub-device of " + d.Backend + ":" + d.Parent
	default:
		prod = fmt.Sprintf("unknown %s device", d.Class)
	}
	vendor := d.Vendor
	if vendor == "" || vendor == "unknown" {
		vendor = "unknown vendor"
	}
	return ifc + ": " + vendor + " " + prod
}

// SortDevices orders devices by backend, then port id.
func SortDevices(ds []*Device) {
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].Backend != ds[j].Backend {
			return ds[i].Backend < ds[j].Backend
		}
		return ds[i].ID < ds[j].ID
	})
}
