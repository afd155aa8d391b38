package virt

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/qvm-dev/qvm/core"
)

// Spec is everything the domain XML says about one qube, computed from
// qubes.xml by the reference's rules (spec/start.md §4). The renderers
// (XenXML, QEMUXML) only lay it out.
type Spec struct {
	Name, UUID string
	VirtMode   string // hvm, pvh, pv
	MemoryMiB  int64  // <memory>
	CurrentMiB int64  // <currentMemory>
	HotplugMiB int64  // <maxMemory slots="1">, memory hotplug only
	VCPUs      int64

	Kernel  string // vmlinuz path; "" boots from disk (HVM)
	Initrd  string
	Cmdline string
	HasCmd  bool // a <cmdline> element (only when the qube has a kernel)

	RdrandOff bool // host CPU (6,58)/(6,62)
	E820Host  bool
	UEFI      bool
	// HVM clock: "localtime", or an adjustment in seconds ("0" = utc).
	ClockLocal  bool
	ClockAdjust string

	Disks []Disk
	Net   *Net
	PCI   []PCI

	Stubdom *Stubdom // HVM only

	// QEMU/KVM only: the serial console's log file.
	ConsoleLog string
	// KernelVersion is the kernel property (for messages).
	KernelVersion string
}

// Disk is one block device of the domain.
type Disk struct {
	Volume   string // volume name; "" for an assigned block device
	Path     string
	Target   string // xvda… (Xen naming; QEMU maps xvdX to vdX)
	ReadOnly bool
	Backend  string // backend domain; "" = dom0
	DevType  string // disk or cdrom
	Script   bool   // <script path="/etc/xen/scripts/qubes-block"/>
}

// Net is the qube's network interface towards its netvm.
type Net struct {
	MAC, IP, IP6, Backend string
}

// PCI is one assigned PCI function.
type PCI struct {
	Domain, Bus, Slot, Function string // "0x0000", "0x00", "0x00", "0x0"
	Permissive, NoStrictReset   bool
	NoPMFilter                  bool // dom0 feature suspend-s0ix
}

// Stubdom is the HVM device model's stub domain.
type Stubdom struct {
	Type        string // stubdom-linux or stubdom
	Cmdline     string
	MemoryKiB   int64 // 0: libxl's default
	FullKernel  bool
	Sound       string
	Video       string // "" no video
	Graphics    bool
	GuiDomain   string
	GraphicsLog bool
}

// SpecInput is what NewSpec needs beyond qubes.xml.
type SpecInput struct {
	// VolumeDisk gives the block device (path, ok) of a volume; volumes
	// without one get no disk. The kernel volume is handled here.
	VolumeDisk func(v *core.VolumeConfig) (string, bool)
	// XID is a running qube's hypervisor ID, -1 when it does not run.
	XID func(name string) int
	// Running reports whether a qube runs (guivm in the HVM graphics).
	Running func(name string) bool
	// CPUFamily, CPUModel of the host (for the rdrand quirk).
	CPUFamily, CPUModel int
	// PCIDisplay: an assigned PCI device is a display controller.
	PCIDisplay bool
	// ConsoleLog is the serial log path for QEMU/KVM.
	ConsoleLog string
	// Assigned are block devices attached at start (qvm start --drive):
	// Path, DevType, ReadOnly, Backend and optionally Target are used.
	Assigned []Disk
	// ResolvePCI gives the address (SSSS:BB:DD.F) of a PCI port id. A
	// bridged path (00_08.1-00_00.2) needs the host's sysfs to resolve;
	// without a resolver only single-hop ids can be addressed.
	ResolvePCI func(port string) (string, bool)
}

// builtinCommon is the kernel command line start when the kernel has no
// default-kernelopts-common.txt (note the trailing space).
const builtinCommon = "root=/dev/mapper/dmroot ro nomodeset console=hvc0 rd_NO_PLYMOUTH rd.plymouth.enable=0 plymouth.enable=0 xen_privcmd.unrestricted "

const (
	pvgrubPVH = "/var/lib/qubes/vm-kernels/pvgrub2-pvh/vmlinuz"
	pvgrubPV  = "/var/lib/qubes/vm-kernels/pvgrub2/vmlinuz"
)

// truthy reads a feature as the reference's bool check does; absent is false.
func truthy(v string, ok bool) bool {
	if !ok {
		return false
	}
	b, err := core.ParseBool(v)
	if err != nil {
		return v != ""
	}
	return b
}

func get(a *core.App, d *core.Domain, name string) core.Value {
	v, err := a.Get(d, name)
	if err != nil {
		return core.Value{None: true}
	}
	return v
}

// NewSpec computes a qube's domain description.
func NewSpec(a *core.App, d *core.Domain, in SpecInput) (*Spec, error) {
	if !d.IsQubesVM() {
		return nil, fmt.Errorf("%s is a %s and has no domain of its own", d.Name(), d.Class)
	}
	if in.XID == nil {
		in.XID = func(string) int { return -1 }
	}
	if in.Running == nil {
		in.Running = func(string) bool { return false }
	}
	s := &Spec{Name: d.Name(), UUID: d.UUID(), ConsoleLog: in.ConsoleLog}
	s.VirtMode = get(a, d, "virt_mode").S
	memory := get(a, d, "memory").Int()
	maxmem := get(a, d, "maxmem").Int()
	s.VCPUs = get(a, d, "vcpus").Int()
	s.CurrentMiB = memory
	hvm := s.VirtMode == "hvm"
	pci, err := requiredPCI(d, in.ResolvePCI)
	if err != nil {
		return nil, err
	}
	switch {
	case hvm && len(pci) > 0 || maxmem == 0:
		s.MemoryMiB = memory
	case truthy(a.FeatureWithTemplate(d, "memory-hotplug")):
		s.MemoryMiB = memory
		s.HotplugMiB = maxmem
	default:
		s.MemoryMiB = maxmem
	}
	if s.VirtMode != "pv" {
		s.RdrandOff = in.CPUFamily == 6 && (in.CPUModel == 58 || in.CPUModel == 62)
	}

	kernel := get(a, d, "kernel").S
	s.KernelVersion = kernel
	kdir := ""
	if kernel != "" {
		kdir = a.KernelDir(kernel)
		if !hvm {
			s.Kernel = filepath.Join(kdir, "vmlinuz")
		}
		if _, err := os.Stat(filepath.Join(kdir, "initramfs")); err == nil && !hvm {
			s.Initrd = filepath.Join(kdir, "initramfs")
		}
		s.HasCmd = true
		s.Cmdline = cmdline(a, d, kdir, len(pci) > 0 && in.PCIDisplay)
	} else if s.VirtMode == "pvh" {
		s.Kernel = pvgrubPVH
	} else if s.VirtMode == "pv" {
		s.Kernel = pvgrubPV
	}

	s.E820Host = len(pci) > 0 && truthy(a.FeatureWithTemplate(d, "pci-e820-host"))
	if len(pci) > 0 {
		if _, ok := a.FeatureWithTemplate(d, "pci-e820-host"); !ok {
			s.E820Host = true
		}
	}
	if hvm {
		s.UEFI = truthy(a.FeatureWithTemplate(d, "uefi"))
		s.ClockAdjust = "0"
		if tz, ok := a.FeatureWithTemplate(d, "timezone"); ok {
			if tz == "localtime" {
				s.ClockLocal = true
			} else if regexp.MustCompile(`^-?[0-9]+$`).MatchString(tz) {
				s.ClockAdjust = tz
			}
		}
	}

	// Disks: the volumes in order, then the assigned block devices.
	next := 'e'
	for _, v := range core.VolumeOrder(d) {
		target := ""
		switch v.Name {
		case "root":
			target = "xvda"
		case "private":
			target = "xvdb"
		case "volatile":
			target = "xvdc"
		case "kernel":
			target = "xvdd"
		default:
			if next > 'y' {
				return nil, fmt.Errorf("%s: too many volumes for xvde…xvdy", d.Name())
			}
			target = "xvd" + string(next)
			next++
		}
		var path string
		if v.Name == "kernel" {
			if kdir == "" {
				continue
			}
			path = filepath.Join(kdir, "modules.img")
			if _, err := os.Stat(path); err != nil {
				continue
			}
		} else {
			p, ok := "", false
			if in.VolumeDisk != nil {
				p, ok = in.VolumeDisk(v)
			}
			if !ok {
				continue
			}
			path = p
		}
		s.Disks = append(s.Disks, Disk{Volume: v.Name, Path: path, Target: target,
			ReadOnly: !v.RW || v.Name == "kernel", DevType: "disk", Script: true})
	}

	// Assigned block devices: counter restarting at xvdi; a cdrom of a qube
	// without kernel takes xvdd (spec/start.md §4.2).
	next = 'i'
	for _, ad := range in.Assigned {
		t := ad.Target
		switch {
		case t != "":
		case ad.DevType == "cdrom" && kernel == "":
			t = "xvdd"
		default:
			if next > 'z' {
				return nil, fmt.Errorf("%s: too many block devices", d.Name())
			}
			t = "xvd" + string(next)
			next++
		}
		if ad.DevType == "" {
			ad.DevType = "disk"
		}
		ad.Target, ad.Script = t, true
		if ad.Backend != "" && ad.Backend != "dom0" {
			// Older agents bring their own block script.
			ad.Script = false
			if b, err := a.Domain(ad.Backend); err == nil {
				v, _ := b.Feature("qubes-agent-version")
				ad.Script = versionAtLeast(v, 4, 2)
			}
		} else {
			ad.Backend = ""
		}
		s.Disks = append(s.Disks, ad)
	}

	if nv := a.Netvm(d); nv != nil {
		n := &Net{MAC: get(a, d, "mac").S, IP: get(a, d, "ip").S, Backend: nv.Name()}
		if ip6 := get(a, d, "ip6"); !ip6.None {
			n.IP6 = ip6.S
		}
		s.Net = n
	}
	s0ix, _ := a.Dom0().Feature("suspend-s0ix")
	for _, p := range pci {
		p.NoPMFilter = s0ix != ""
		s.PCI = append(s.PCI, p)
	}

	if hvm {
		s.Stubdom = stubdom(a, d, in)
	}
	return s, nil
}

func cmdline(a *core.App, d *core.Domain, kdir string, pciDisplay bool) string {
	common := ""
	if osName, _ := a.FeatureWithTemplate(d, "os"); osName == "Linux" {
		common = "systemd.machine_id=" + strings.ReplaceAll(d.UUID(), "-", "") + " "
	}
	if b, err := os.ReadFile(filepath.Join(kdir, "default-kernelopts-common.txt")); err == nil {
		common += strings.TrimRight(string(b), "\n")
	} else {
		common += builtinCommon
	}
	nm, nmSet := a.FeatureWithTemplate(d, "no-nomodeset")
	if truthy(nm, nmSet) || !nmSet && pciDisplay {
		words := strings.Split(common, " ")
		kept := words[:0]
		for _, w := range words {
			if w != "nomodeset" {
				kept = append(kept, w)
			}
		}
		common = strings.Join(kept, " ")
	}
	opts := get(a, d, "kernelopts").S
	boot := ""
	if mode := get(a, d, "bootmode").S; mode != "" && mode != "default" {
		extra, _ := a.FeatureWithTemplate(d, "boot-mode.kernelopts."+mode)
		boot = " " + extra
	}
	switch {
	case truthy(a.FeatureWithTemplate(d, "no-default-kernelopts")):
		return opts + boot
	case feat(a, d, "apparmor") == "1":
		return common + opts + " apparmor=1 security=apparmor" + boot
	case feat(a, d, "selinux") == "1":
		return common + opts + " selinux=1 security=selinux" + boot
	}
	return common + opts + boot
}

func feat(a *core.App, d *core.Domain, name string) string {
	v, _ := a.FeatureWithTemplate(d, name)
	return v
}

var rePCIPort = regexp.MustCompile(`^(?:([0-9a-f]{4})_)?([0-9a-f]{2})_([0-9a-f]{2})\.([0-7])$`)

// requiredPCI lists the required PCI assignments as addresses. A bridged
// path is resolved through the host (resolve); a single hop is its own address.
func requiredPCI(d *core.Domain, resolve func(string) (string, bool)) ([]PCI, error) {
	c := d.DeviceClass("pci")
	if c == nil {
		return nil, nil
	}
	var out []PCI
	for _, as := range c.Devices {
		if as.Mode != "required" {
			continue
		}
		port := strings.ToLower(as.Port)
		if resolve != nil {
			if addr, ok := resolve(port); ok {
				port = strings.NewReplacer(":", "_").Replace(addr)
			}
		}
		if strings.Contains(port, "-") {
			return nil, fmt.Errorf("PCI device %s of %s: cannot find its address (no such device on this host)", as.Port, d.Name())
		}
		m := rePCIPort.FindStringSubmatch(port)
		if m == nil {
			continue
		}
		seg := m[1]
		if seg == "" {
			seg = "0000"
		}
		fn, _ := strconv.Atoi(m[4])
		p := PCI{Domain: "0x" + seg, Bus: "0x" + m[2], Slot: "0x" + m[3], Function: fmt.Sprintf("0x%x", fn)}
		for _, o := range as.Options {
			on := truthy(o.Value, true)
			switch o.Key {
			case "permissive":
				p.Permissive = on
			case "no-strict-reset":
				p.NoStrictReset = on
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func stubdom(a *core.App, d *core.Domain, in SpecInput) *Stubdom {
	linux := truthy(a.FeatureWithTemplate(d, "linux-stubdom"))
	if _, ok := a.FeatureWithTemplate(d, "linux-stubdom"); !ok {
		linux = true
	}
	st := &Stubdom{Type: "stubdom"}
	if linux {
		st.Type = "stubdom-linux"
	}
	audioXID := -1
	if av := get(a, d, "audiovm"); !av.None {
		if av.S == "dom0" {
			audioXID = 0
		} else {
			audioXID = in.XID(av.S)
		}
	}
	cmd := fmt.Sprintf("-qubes-audio:audiovm_xid=%d", audioXID)
	if extra, ok := a.FeatureWithTemplate(d, "qemu-extra-args"); ok && extra != "" {
		cmd += " " + extra
	}
	debug := get(a, d, "debug").Bool()
	if debug {
		cmd += " -trace xen_platform_log"
	}
	if nv := a.Netvm(d); nv != nil {
		ip, gw := get(a, d, "visible_ip").S, get(a, nv, "gateway").S
		if linux {
			cmd += fmt.Sprintf(" -qubes-net:client_ip=%s,dns_0=10.139.1.1,dns_1=10.139.1.2,gw=%s,netmask=255.255.255.255", ip, gw)
		} else {
			cmd += fmt.Sprintf(" -net lwip,client_ip=%s,server_ip=10.139.1.2,dns=10.139.1.1,gw=%s,netmask=255.255.255.255", ip, gw)
		}
	}
	st.Cmdline = strings.TrimSpace(cmd)
	if m := get(a, d, "stubdom_mem"); !m.None && m.Int() > 0 {
		st.MemoryKiB = m.Int() * 1024
	}
	sound, hasSound := a.FeatureWithTemplate(d, "audio-model")
	_, qrexec := a.FeatureWithTemplate(d, "stubdom-qrexec")
	st.FullKernel = hasSound && sound != "" || qrexec
	if hasSound {
		st.Sound = sound
	}
	video := "vga"
	if v, ok := a.FeatureWithTemplate(d, "video-model"); ok && v != "" {
		video = v
	}
	if video != "none" {
		st.Video = video
		st.Graphics = linux
		if g := get(a, d, "guivm"); !g.None && g.S != "dom0" && in.Running(g.S) {
			st.GuiDomain = g.S
		}
		st.GraphicsLog = debug
	}
	return st
}

// versionAtLeast compares a dotted version's first two numbers.
func versionAtLeast(v string, major, minor int) bool {
	var a, b int
	if n, _ := fmt.Sscanf(v, "%d.%d", &a, &b); n < 1 {
		return false
	}
	return a > major || a == major && b >= minor
}
