package devices

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// SysFS is a sysfs tree: "/sys" on a host, a fixture copy in tests.
type SysFS struct{ Root string }

func (s SysFS) path(parts ...string) string {
	root := s.Root
	if root == "" {
		root = "/sys"
	}
	return filepath.Join(append([]string{root}, parts...)...)
}

// SBDF is a PCI address: segment, bus, device, function.
type SBDF struct {
	Segment, Bus, Device, Function int
}

func (a SBDF) String() string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", a.Segment, a.Bus, a.Device, a.Function)
}

var reSBDF = regexp.MustCompile(`^(?:pci_)?(?:([0-9a-f]{4})[_:])?([0-9a-f]{2})[_:]([0-9a-f]{2})[._]([0-9a-f])$`)

// ParseSBDF accepts [pci_][SSSS:|SSSS_]BB:|_DD.|_F in lowercase hex.
func ParseSBDF(s string) (SBDF, error) {
	m := reSBDF.FindStringSubmatch(s)
	if m == nil {
		return SBDF{}, errorf("Invalid device identifier: %q", s)
	}
	seg := 0
	if m[1] != "" {
		seg = hexInt(m[1])
	}
	return SBDF{seg, hexInt(m[2]), hexInt(m[3]), hexInt(m[4])}, nil
}

func hexInt(s string) int {
	n, _ := strconv.ParseInt(s, 16, 32)
	return int(n)
}

// secondaryBus reads a bridge's secondary bus number (false when absent).
func (s SysFS) secondaryBus(a SBDF) (int, bool) {
	b, err := os.ReadFile(s.path("bus/pci/devices", a.String(), "secondary_bus_number"))
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// chain is the list of bridges down to the device, read from the target
// of /sys/bus/pci/devices/<SBDF> (only the link text matters).
func (s SysFS) chain(a SBDF) ([]SBDF, bool) {
	target, err := os.Readlink(s.path("bus/pci/devices", a.String()))
	if err != nil {
		return nil, false
	}
	var out []SBDF
	seenRoot := false
	for _, part := range strings.Split(target, "/") {
		if strings.HasPrefix(part, "pci") && !seenRoot {
			seenRoot = true
			continue
		}
		if !seenRoot {
			continue
		}
		x, err := ParseSBDF(part)
		if err != nil {
			return nil, false
		}
		out = append(out, x)
	}
	return out, len(out) > 0
}

// SBDFToPath turns an SBDF (any accepted form) into the PCI path port id;
// ok is false when sysfs does not know the device.
func (s SysFS) SBDFToPath(id string) (string, bool, error) {
	a, err := ParseSBDF(id)
	if err != nil {
		return "", false, err
	}
	ch, ok := s.chain(a)
	if !ok {
		return "", false, nil
	}
	first := ch[0]
	var b strings.Builder
	if first.Segment != 0 {
		fmt.Fprintf(&b, "%04x_", first.Segment)
	}
	fmt.Fprintf(&b, "%02x_%02x.%x", first.Bus, first.Device, first.Function)
	for i := 1; i < len(ch); i++ {
		sec, ok := s.secondaryBus(ch[i-1])
		if !ok {
			return "", false, nil
		}
		rel := ch[i].Bus - sec
		if rel < 0 || rel > 0xff {
			return "", false, nil // a bus outside its bridge: not a tree we can name
		}
		fmt.Fprintf(&b, "-%02x_%02x.%x", rel, ch[i].Device, ch[i].Function)
	}
	return b.String(), true, nil
}

var rePCIPath = regexp.MustCompile(`^(?:([0-9a-f]{4})_)?([0-9a-f]{2})_([0-9a-f]{2})\.([0-9a-f])((?:-[0-9a-f]{2}_[0-9a-f]{2}\.[0-9a-f])*)$`)

// IsPCIPath reports whether id is a PCI path whose first bus is a root bus.
func (s SysFS) IsPCIPath(id string) bool {
	m := rePCIPath.FindStringSubmatch(id)
	if m == nil {
		return false
	}
	seg := "0000"
	if m[1] != "" {
		seg = m[1]
	}
	_, err := os.Stat(s.path("devices", "pci"+seg+":"+m[2]))
	return err == nil
}

// PathToSBDF resolves a PCI path through the bridges' secondary buses.
func (s SysFS) PathToSBDF(id string) (SBDF, bool) {
	m := rePCIPath.FindStringSubmatch(id)
	if m == nil {
		return SBDF{}, false
	}
	seg := 0
	if m[1] != "" {
		seg = hexInt(m[1])
	}
	cur := SBDF{seg, hexInt(m[2]), hexInt(m[3]), hexInt(m[4])}
	for _, c := range strings.Split(m[5], "-")[1:] {
		sec, ok := s.secondaryBus(cur)
		if !ok {
			return SBDF{}, false
		}
		var rb, dv, fn int
		if _, err := fmt.Sscanf(c, "%02x_%02x.%x", &rb, &dv, &fn); err != nil {
			return SBDF{}, false
		}
		if sec+rb > 0xff {
			return SBDF{}, false
		}
		cur = SBDF{seg, sec + rb, dv, fn}
	}
	return cur, true
}
