package devices

import (
	"bufio"
	"bytes"
	"os"
	"strings"
)

// IDs is a parsed pci.ids or usb.ids file (the Debian pci.ids / usb.ids
// packages): vendor, product and class names by hex id.
type IDs struct {
	// paths, when set, are read on the first lookup: most listings name
	// no device (empty trees, block) and need not pay for the parse.
	paths    []string
	loaded   bool
	vendors  map[string]string // "8086"
	products map[string]string // "8086:8cb1"
	classes  map[string]string // "0c" and "0c03"
}

// IDsPaths are where Debian and other distributions put the files.
var (
	PCIIDsPaths = []string{"/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"}
	USBIDsPaths = []string{"/usr/share/misc/usb.ids", "/var/lib/usbutils/usb.ids", "/usr/share/hwdata/usb.ids"}
)

// LoadIDs reads, at the first lookup, the first file of paths that
// exists; none gives an empty table (every name then reads as unknown).
func LoadIDs(paths []string) *IDs { return &IDs{paths: paths} }

func (ids *IDs) load() *IDs {
	if ids.loaded || ids.paths == nil {
		return ids
	}
	var data []byte
	for _, p := range ids.paths {
		if b, err := os.ReadFile(p); err == nil {
			data = b
			break
		}
	}
	*ids = *ParseIDs(data)
	return ids
}

// ParseIDs parses the ids format: vendors at column 0, their devices one
// tab in (subsystems, two tabs, are skipped), classes after "C ".
func ParseIDs(data []byte) *IDs {
	ids := &IDs{loaded: true, vendors: map[string]string{}, products: map[string]string{}, classes: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var vendor, class string
	inClasses := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		tabs := len(line) - len(strings.TrimLeft(line, "\t"))
		rest := line[tabs:]
		switch tabs {
		case 0:
			vendor, class = "", ""
			if strings.HasPrefix(rest, "C ") {
				inClasses = true
				id, name, ok := splitID(rest[2:])
				if ok {
					class = id
					ids.classes[id] = name
				}
				continue
			}
			if len(rest) > 2 && rest[1] == ' ' { // other sections (AT, HID, ...)
				inClasses = false
				continue
			}
			inClasses = false
			if id, name, ok := splitID(rest); ok {
				vendor = id
				ids.vendors[id] = name
			}
		case 1:
			id, name, ok := splitID(rest)
			if !ok {
				continue
			}
			if inClasses && class != "" {
				ids.classes[class+id] = name
			} else if vendor != "" {
				ids.products[vendor+":"+id] = name
			}
		}
	}
	return ids
}

func splitID(s string) (id, name string, ok bool) {
	id, name, ok = strings.Cut(s, "  ")
	return strings.ToLower(strings.TrimSpace(id)), strings.TrimSpace(name), ok
}

// Vendor name of a 4-hex-digit id ("" unknown).
func (ids *IDs) Vendor(v string) string { return ids.load().vendors[strings.ToLower(v)] }

// Product name of a vendor's device ("" unknown).
func (ids *IDs) Product(v, p string) string { return ids.load().products[strings.ToLower(v+":"+p)] }

// Class name: the subclass name when known, else the class name.
func (ids *IDs) Class(class, subclass string) string {
	ids.load()
	if n, ok := ids.classes[strings.ToLower(class+subclass)]; ok {
		return n
	}
	return ids.classes[strings.ToLower(class)]
}
