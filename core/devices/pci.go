package devices

import (
	"os"
	"sort"
	"strings"
)

// Discoverer lists the devices dom0 itself exposes, from sysfs, udev's
// database and the ids files.
type Discoverer struct {
	Sys SysFS
	// UdevData is udev's database directory (default /run/udev/data).
	UdevData string
	// MountInfo lists mounted filesystems (default /proc/self/mountinfo);
	// mounted block devices are dom0's own and are not offered.
	MountInfo string
	PCIIDs    *IDs
	USBIDs    *IDs
}

// Backend is the domain whose devices a Discoverer sees.
const Backend = "dom0"

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// PCIDevices lists /sys/bus/pci/devices. The port id is the PCI path; a
// device whose path cannot be worked out keeps its legacy BB_DD.F id.
func (d *Discoverer) PCIDevices() ([]*Device, error) {
	dir := d.Sys.path("bus/pci/devices")
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids := d.PCIIDs
	if ids == nil {
		ids = ParseIDs(nil)
	}
	var out []*Device
	for _, e := range ents {
		a, err := ParseSBDF(e.Name())
		if err != nil {
			continue
		}
		out = append(out, d.pciDevice(a, ids))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (d *Discoverer) pciDevice(a SBDF, ids *IDs) *Device {
	base := d.Sys.path("bus/pci/devices", a.String())
	vendor := strings.TrimPrefix(readTrim(base+"/vendor"), "0x")
	product := strings.TrimPrefix(readTrim(base+"/device"), "0x")
	class := strings.TrimPrefix(readTrim(base+"/class"), "0x")
	port, ok, _ := d.Sys.SBDFToPath(a.String())
	if !ok {
		port = strings.NewReplacer(":", "_").Replace(a.String()[5:])
	}
	dev := &Device{Port: Port{Backend: Backend, ID: port, Class: PCI}}
	ifc := Unknown
	if len(class) == 6 {
		ifc = Interface("p" + class)
		dev.ClassName = ids.Class(class[:2], class[2:4])
	}
	dev.Interfaces = []Interface{ifc}
	if vendor != "" {
		dev.Vendor = ids.Vendor(vendor)
		dev.Product = ids.Product(vendor, product)
	}
	vid, pid := "0000", "0000"
	if vendor != "" {
		vid, pid = "0x"+vendor, "0x"+product
	}
	dev.DeviceID = sanitizeID(vid) + ":" + sanitizeID(pid) + "::" + string(ifc)
	dev.Extra = []KV{{"sbdf", a.String()}}
	return dev
}

// PCIDevice finds one PCI device by port id (PCI path or legacy id).
func (d *Discoverer) PCIDevice(port string) (*Device, bool) {
	var a SBDF
	if x, ok := d.Sys.PathToSBDF(port); ok && d.Sys.IsPCIPath(port) {
		a = x
	} else if x, err := ParseSBDF(port); err == nil {
		a = x
	} else {
		return nil, false
	}
	if _, err := os.Lstat(d.Sys.path("bus/pci/devices", a.String())); err != nil {
		return nil, false
	}
	ids := d.PCIIDs
	if ids == nil {
		ids = ParseIDs(nil)
	}
	dev := d.pciDevice(a, ids)
	return dev, dev.ID == port
}
