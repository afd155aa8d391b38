package devices

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// Flavor is the libvirt driver a piece of domain XML is written for: Xen
// on a Qubes host (the stock templates' shape), QEMU elsewhere (the
// embedded TCG driver tests boot).
type Flavor int

// The flavors.
const (
	Xen Flavor = iota
	QEMU
)

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}

// BlockOptions are the checked options of a block attachment.
type BlockOptions struct {
	FrontendDev string // xvdi, sdb, ...
	ReadOnly    bool
	DevType     string // disk or cdrom
}

// DiskXML is the <disk> element that attaches a block device. backend is
// the domain that holds the device ("dom0" needs no backenddomain).
func DiskXML(f Flavor, devPath, backend string, o BlockOptions) string {
	devtype := o.DevType
	if devtype == "" {
		devtype = "disk"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<disk type=\"block\" device=\"%s\">\n", esc(devtype))
	if f == Xen {
		b.WriteString("  <driver name=\"phy\"/>\n")
		fmt.Fprintf(&b, "  <source dev=\"%s\"/>\n", esc(devPath))
		fmt.Fprintf(&b, "  <target dev=\"%s\"/>\n", esc(o.FrontendDev))
	} else {
		// QEMU has no xen bus. On usb the disk comes and goes at once, like
		// a Qubes block device (a virtio unplug waits for the guest), and the
		// target keeps the frontend name so the live XML still tells it.
		b.WriteString("  <driver name=\"qemu\" type=\"raw\"/>\n")
		fmt.Fprintf(&b, "  <source dev=\"%s\"/>\n", esc(devPath))
		fmt.Fprintf(&b, "  <target dev=\"%s\" bus=\"usb\"/>\n", esc(o.FrontendDev))
	}
	if o.ReadOnly {
		b.WriteString("  <readonly/>\n")
	}
	if f == Xen && backend != "" && backend != "dom0" {
		fmt.Fprintf(&b, "  <backenddomain name=\"%s\"/>\n", esc(backend))
	}
	b.WriteString("</disk>\n")
	return b.String()
}

// HostdevPCIXML is the <hostdev> element of a PCI device with the options
// of spec §6.3 (any non-empty option value enables it, as in the stock
// template).
func HostdevPCIXML(f Flavor, a SBDF, noStrictReset, permissive, s0ix bool) string {
	var b strings.Builder
	b.WriteString("<hostdev mode=\"subsystem\" type=\"pci\" managed=\"yes\"")
	if f == Xen && noStrictReset {
		b.WriteString(" nostrictreset=\"yes\"")
	}
	b.WriteString(">\n  <source")
	if f == Xen && permissive {
		b.WriteString(" writeFiltering=\"no\"")
	}
	if f == Xen && s0ix {
		b.WriteString(" powerManagementFiltering=\"no\"")
	}
	fmt.Fprintf(&b, ">\n    <address domain=\"0x%04x\" bus=\"0x%02x\" slot=\"0x%02x\" function=\"0x%x\"/>\n  </source>\n",
		a.Segment, a.Bus, a.Device, a.Function)
	b.WriteString("</hostdev>\n")
	return b.String()
}

// HostdevUSBXML is the <hostdev> element of a USB device of dom0.
func HostdevUSBXML(bus, devnum int) string {
	return fmt.Sprintf("<hostdev mode=\"subsystem\" type=\"usb\">\n  <source>\n    <address bus=\"%d\" device=\"%d\"/>\n  </source>\n</hostdev>\n", bus, devnum)
}

// Attached is a device found in a domain's live XML.
type Attached struct {
	Port
	Options []KV   // read-only, frontend-dev, devtype (block)
	XML     string // the element, for detaching
}

type liveDomain struct {
	Devices struct {
		Disks []struct {
			Type   string `xml:"type,attr"`
			Device string `xml:"device,attr"`
			Source struct {
				Dev string `xml:"dev,attr"`
			} `xml:"source"`
			Target struct {
				Dev string `xml:"dev,attr"`
			} `xml:"target"`
			ReadOnly *struct{} `xml:"readonly"`
			Backend  struct {
				Name string `xml:"name,attr"`
			} `xml:"backenddomain"`
			Inner []byte `xml:",innerxml"`
		} `xml:"disk"`
		Hostdevs []struct {
			Type   string `xml:"type,attr"`
			Source struct {
				Address struct {
					Domain   string `xml:"domain,attr"`
					Bus      string `xml:"bus,attr"`
					Slot     string `xml:"slot,attr"`
					Function string `xml:"function,attr"`
					Device   string `xml:"device,attr"`
				} `xml:"address"`
			} `xml:"source"`
		} `xml:"hostdev"`
	} `xml:"devices"`
}

// systemDisks are the frontends of a qube's own volumes.
var systemDisks = map[string]bool{"xvda": true, "xvdb": true, "xvdc": true}

// ParseLiveXML reads the attached block, PCI and USB devices of a running
// domain; PCI addresses become port ids through sys. Disks of the qube's
// own volumes (xvda-xvdc) and file-backed disks are not devices.
func ParseLiveXML(data string, sys SysFS, usb func(bus, dev int) string) ([]Attached, []string, error) {
	var d liveDomain
	if err := xml.Unmarshal([]byte(data), &d); err != nil {
		return nil, nil, fmt.Errorf("domain XML: %w", err)
	}
	var out []Attached
	var targets []string
	for _, k := range d.Devices.Disks {
		targets = append(targets, k.Target.Dev)
		if k.Type != "block" || systemDisks[k.Target.Dev] || !strings.HasPrefix(k.Source.Dev, "/dev/") {
			continue
		}
		backend := k.Backend.Name
		if backend == "" {
			backend = "dom0"
		}
		port := strings.ReplaceAll(strings.TrimPrefix(k.Source.Dev, "/dev/"), "/", "_")
		ro := "no"
		if k.ReadOnly != nil {
			ro = "yes"
		}
		opts := []KV{{"frontend-dev", k.Target.Dev}, {"read-only", ro}}
		if k.Device != "" && k.Device != "disk" {
			opts = append(opts, KV{"devtype", k.Device})
		}
		out = append(out, Attached{Port: Port{Backend: backend, ID: port, Class: Block}, Options: opts,
			XML: fmt.Sprintf("<disk type=\"block\" device=\"%s\"><source dev=\"%s\"/><target dev=\"%s\"/></disk>", esc(orDisk(k.Device)), esc(k.Source.Dev), esc(k.Target.Dev))})
	}
	for _, h := range d.Devices.Hostdevs {
		a := h.Source.Address
		switch h.Type {
		case "pci":
			x := SBDF{parseNum(a.Domain), parseNum(a.Bus), parseNum(a.Slot), parseNum(a.Function)}
			port, ok, _ := sys.SBDFToPath(x.String())
			if !ok {
				port = fmt.Sprintf("%02x_%02x.%x", x.Bus, x.Device, x.Function)
			}
			out = append(out, Attached{Port: Port{Backend: "dom0", ID: port, Class: PCI}, XML: HostdevPCIXML(QEMU, x, false, false, false)})
		case "usb":
			bus, dev := parseNum(a.Bus), parseNum(a.Device)
			port := ""
			if usb != nil {
				port = usb(bus, dev)
			}
			if port == "" {
				port = fmt.Sprintf("bus%d-dev%d", bus, dev)
			}
			out = append(out, Attached{Port: Port{Backend: "dom0", ID: port, Class: USB}, XML: HostdevUSBXML(bus, dev)})
		}
	}
	return out, targets, nil
}

func orDisk(s string) string {
	if s == "" {
		return "disk"
	}
	return s
}

func parseNum(s string) int {
	n, _ := strconv.ParseInt(s, 0, 32)
	return int(n)
}

// FreeFrontend picks the first unused frontend name: xvdi-xvdz,
// xvdaa-xvdzz, then xvda-xvdh; a cdrom prefers xvdd when it is free.
func FreeFrontend(used []string, cdrom bool) (string, bool) {
	u := map[string]bool{}
	for _, x := range used {
		u[x] = true
	}
	if cdrom && !u["xvdd"] {
		return "xvdd", true
	}
	var cands []string
	for c := 'i'; c <= 'z'; c++ {
		cands = append(cands, "xvd"+string(c))
	}
	for a := 'a'; a <= 'z'; a++ {
		for c := 'a'; c <= 'z'; c++ {
			cands = append(cands, "xvd"+string(a)+string(c))
		}
	}
	for c := 'a'; c <= 'h'; c++ {
		cands = append(cands, "xvd"+string(c))
	}
	for _, c := range cands {
		if !u[c] {
			return c, true
		}
	}
	return "", false
}
