package devices

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// rePortBlock is the reference's filter on listed block port ids.
var rePortBlock = regexp.MustCompile(`^[a-z0-9-]{1,12}$`)

// BlockDevices lists /sys/block and the partitions below each disk, with
// size, read-only flag, loop backing file and udev's model and label.
// Empty devices (unused loop devices, empty drives), dom0's mounted
// filesystems and whole disks with a mounted partition are left out.
func (d *Discoverer) BlockDevices() ([]*Device, error) {
	ents, err := os.ReadDir(d.Sys.path("block"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	mounted := d.mounted()
	var out []*Device
	for _, e := range ents {
		name := e.Name()
		dir := d.Sys.path("block", name)
		disk := d.blockDevice(name, dir, nil, mounted)
		var parts []*Device
		sub, _ := os.ReadDir(dir)
		for _, s := range sub {
			if _, err := os.Stat(filepath.Join(dir, s.Name(), "partition")); err != nil {
				continue
			}
			if p := d.blockDevice(s.Name(), filepath.Join(dir, s.Name()), disk, mounted); p != nil {
				parts = append(parts, p)
			}
		}
		inUse := false
		for _, p := range parts {
			if p.Size < 0 {
				inUse = true
			}
		}
		if disk != nil && disk.Size > 0 && !inUse && rePortBlock.MatchString(name) {
			out = append(out, disk)
		}
		for _, p := range parts {
			if p.Size > 0 && rePortBlock.MatchString(p.ID) {
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// BlockDevice looks one block device up by port id; the listing filter on
// the name does not apply to a direct lookup.
func (d *Discoverer) BlockDevice(port string) (*Device, bool) {
	name := strings.ReplaceAll(port, "_", "/")
	if strings.Contains(name, "..") || strings.Contains(port, "/") {
		return nil, false
	}
	mounted := d.mounted()
	if _, err := os.Stat(d.Sys.path("block", name)); err == nil {
		dev := d.blockDevice(name, d.Sys.path("block", name), nil, mounted)
		return dev, dev != nil && dev.Size > 0
	}
	// a partition: find its disk
	ents, _ := os.ReadDir(d.Sys.path("block"))
	for _, e := range ents {
		dir := d.Sys.path("block", e.Name(), name)
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			parent := d.blockDevice(e.Name(), d.Sys.path("block", e.Name()), nil, mounted)
			dev := d.blockDevice(name, dir, parent, mounted)
			return dev, dev != nil && dev.Size > 0
		}
	}
	return nil, false
}

// blockDevice reads one device; Size -1 marks a mounted one.
func (d *Discoverer) blockDevice(name, dir string, parent *Device, mounted map[string]bool) *Device {
	majmin := readTrim(filepath.Join(dir, "dev"))
	if majmin == "" {
		return nil
	}
	sectors, _ := strconv.ParseInt(readTrim(filepath.Join(dir, "size")), 10, 64)
	dev := &Device{Port: Port{Backend: Backend, ID: name, Class: Block}, Interfaces: []Interface{"b******"}}
	dev.Size = sectors * 512
	dev.ReadOnly = readTrim(filepath.Join(dir, "ro")) == "1"
	dev.DevPath = "/dev/" + name
	udev := d.udevProps(majmin)
	model := udev["ID_MODEL"]
	if model == "" {
		model = udev["ID_SERIAL"]
	}
	dev.Serial = strings.ReplaceAll(model, "_", " ")
	dev.Product = dev.Serial
	dev.Name = udev["ID_FS_LABEL"]
	if dev.Name == "" {
		dev.Name = udev["ID_PART_ENTRY_NAME"]
	}
	backing := readTrim(filepath.Join(dir, "loop", "backing_file"))
	if backing != "" {
		dev.Name = backing
	}
	if mounted[majmin] {
		dev.Size = -1
	}
	mode := "w"
	if dev.ReadOnly {
		mode = "r"
	}
	prefix, num := "", "None"
	if parent != nil {
		dev.Parent = parent.ID
		prefix = parent.DeviceID
		num = strings.TrimPrefix(name, parent.ID)
	}
	dev.DeviceID = prefix + ":" + num
	dev.Extra = []KV{{"size", strconv.FormatInt(max(dev.Size, 0), 10)}, {"mode", mode}}
	if backing != "" {
		dev.Extra = append(dev.Extra, KV{"backing_file", backing})
	}
	return dev
}

// udevProps reads the E: lines of udev's database entry for a device.
func (d *Discoverer) udevProps(majmin string) map[string]string {
	dir := d.UdevData
	if dir == "" {
		dir = "/run/udev/data"
	}
	props := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "b"+majmin))
	if err != nil {
		return props
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(sc.Text(), "E:"); ok {
			if k, v, ok := strings.Cut(kv, "="); ok {
				props[k] = v
			}
		}
	}
	return props
}

// mounted lists the major:minor numbers of mounted filesystems.
func (d *Discoverer) mounted() map[string]bool {
	path := d.MountInfo
	if path == "" {
		path = "/proc/self/mountinfo"
	}
	out := map[string]bool{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 2 {
			out[fs[2]] = true
		}
	}
	return out
}
