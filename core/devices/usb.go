package devices

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// USBDevices lists /sys/bus/usb/devices: devices only (not root hubs
// "usbN" nor interfaces "B-P:C.I"); port ids have '.' as '_' as in the
// stock usb proxy.
func (d *Discoverer) USBDevices() ([]*Device, error) {
	dir := d.Sys.path("bus/usb/devices")
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids := d.USBIDs
	if ids == nil {
		ids = ParseIDs(nil)
	}
	var out []*Device
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "usb") || strings.Contains(name, ":") {
			continue
		}
		out = append(out, d.usbDevice(dir, name, ids))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (d *Discoverer) usbDevice(dir, name string, ids *IDs) *Device {
	base := filepath.Join(dir, name)
	vendor, product := readTrim(base+"/idVendor"), readTrim(base+"/idProduct")
	dev := &Device{Port: Port{Backend: Backend, ID: strings.ReplaceAll(name, ".", "_"), Class: USB}}
	dev.Vendor = readTrim(base + "/manufacturer")
	if dev.Vendor == "" {
		dev.Vendor = ids.Vendor(vendor)
	}
	dev.Product = readTrim(base + "/product")
	if dev.Product == "" {
		dev.Product = ids.Product(vendor, product)
	}
	dev.Serial = readTrim(base + "/serial")
	// interfaces are the B-P:C.I entries beside the device (symlinks in
	// /sys/bus/usb/devices)
	matches, _ := filepath.Glob(filepath.Join(dir, name+":*"))
	sort.Strings(matches)
	var ifcs []Interface
	for _, m := range matches {
		c := readTrim(m + "/bInterfaceClass")
		s := readTrim(m + "/bInterfaceSubClass")
		p := readTrim(m + "/bInterfaceProtocol")
		if len(c) == 2 && len(s) == 2 && len(p) == 2 {
			ifcs = append(ifcs, Interface("u"+c+s+p))
		}
	}
	if len(ifcs) == 0 {
		ifcs = []Interface{Unknown}
	}
	dev.Interfaces = ifcs
	if len(ifcs) > 0 && ifcs[0] != Unknown {
		dev.ClassName = ids.Class(string(ifcs[0][1:3]), string(ifcs[0][3:5]))
	}
	var ifs strings.Builder
	for _, i := range ifcs {
		ifs.WriteString(string(i))
	}
	vid, pid := "0000", "0000"
	if vendor != "" {
		vid, pid = "0x"+vendor, "0x"+product
	}
	dev.DeviceID = sanitizeID(vid) + ":" + sanitizeID(pid) + ":" + sanitizeID(dev.Serial) + ":" + ifs.String()
	dev.Extra = []KV{{"sysfs_name", name}, {"busnum", readTrim(base + "/busnum")}, {"devnum", readTrim(base + "/devnum")}}
	return dev
}

// List returns the devices of one class dom0 exposes.
func (d *Discoverer) List(class string) ([]*Device, error) {
	switch class {
	case PCI:
		return d.PCIDevices()
	case Block:
		return d.BlockDevices()
	case USB:
		return d.USBDevices()
	}
	return nil, errorf("no such device class: %s", class)
}

// Lookup finds the device at a dom0 port.
func (d *Discoverer) Lookup(class, port string) (*Device, bool) {
	switch class {
	case PCI:
		return d.PCIDevice(port)
	case Block:
		return d.BlockDevice(port)
	}
	ds, _ := d.List(class)
	for _, x := range ds {
		if x.ID == port {
			return x, true
		}
	}
	return nil, false
}
