package virt

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"os"
	"strings"
)

// xw writes indented XML lines.
type xw struct {
	b     strings.Builder
	depth int
}

func (w *xw) line(format string, args ...any) {
	w.b.WriteString(strings.Repeat("    ", w.depth))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func (w *xw) open(format string, args ...any) {
	w.line(format, args...)
	w.depth++
}

func (w *xw) close(tag string) {
	w.depth--
	w.line("</%s>", tag)
}

// e escapes text and attribute values.
func e(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return strings.ReplaceAll(b.String(), `"`, "&#34;")
}

func (w *xw) header(s *Spec, typ string) {
	w.open(`<domain type="%s">`, typ)
	w.line(`<name>%s</name>`, e(s.Name))
	w.line(`<uuid>%s</uuid>`, e(s.UUID))
	if s.HotplugMiB > 0 {
		w.line(`<maxMemory unit="MiB" slots="1">%d</maxMemory>`, s.HotplugMiB)
	}
	w.line(`<memory unit="MiB">%d</memory>`, s.MemoryMiB)
	w.line(`<currentMemory unit="MiB">%d</currentMemory>`, s.CurrentMiB)
	w.line(`<vcpu placement="static">%d</vcpu>`, s.VCPUs)
}

func (w *xw) footer() {
	w.line(`<on_poweroff>destroy</on_poweroff>`)
	w.line(`<on_reboot>destroy</on_reboot>`)
	w.line(`<on_crash>destroy</on_crash>`)
}

// XenXML renders the domain for libxl (spec/start.md §4).
func XenXML(s *Spec) string {
	w := &xw{}
	w.header(s, "xen")
	if s.VirtMode != "pv" {
		w.open(`<cpu mode="host-passthrough">`)
		w.line(`<feature name="vmx" policy="disable"/>`)
		w.line(`<feature name="svm" policy="disable"/>`)
		if s.RdrandOff {
			w.line(`<feature name="rdrand" policy="disable"/>`)
		}
		w.line(`<feature name="invtsc" policy="require"/>`)
		w.close("cpu")
	}
	w.open(`<os>`)
	switch s.VirtMode {
	case "hvm":
		w.line(`<type arch="x86_64" machine="xenfv">hvm</type>`)
		if s.UEFI {
			w.line(`<loader type="pflash">/usr/share/edk2/xen/OVMF.fd</loader>`)
		} else {
			w.line(`<loader type="rom">hvmloader</loader>`)
		}
		w.line(`<boot dev="cdrom"/>`)
		w.line(`<boot dev="hd"/>`)
	case "pv":
		w.line(`<type arch="x86_64" machine="xenpv">linux</type>`)
	default:
		w.line(`<type arch="x86_64" machine="xenpvh">xenpvh</type>`)
	}
	if s.Kernel != "" {
		w.line(`<kernel>%s</kernel>`, e(s.Kernel))
	}
	if s.Initrd != "" {
		w.line(`<initrd>%s</initrd>`, e(s.Initrd))
	}
	if s.HasCmd {
		w.line(`<cmdline>%s</cmdline>`, e(s.Cmdline))
	}
	w.close("os")
	w.open(`<features>`)
	if s.VirtMode != "pv" {
		w.line(`<pae/>`)
		w.line(`<acpi/>`)
		w.line(`<apic/>`)
		w.line(`<viridian/>`)
	}
	if s.E820Host {
		w.open(`<xen>`)
		w.line(`<e820_host state="on"/>`)
		w.close("xen")
	}
	w.close("features")
	if s.VirtMode == "hvm" {
		if s.ClockLocal {
			w.line(`<clock offset="variable" adjustment="0" basis="localtime"/>`)
		} else {
			w.line(`<clock offset="variable" adjustment="%s" basis="utc"/>`, e(s.ClockAdjust))
		}
	} else {
		w.open(`<clock offset="utc" adjustment="reset">`)
		w.line(`<timer name="tsc" mode="native"/>`)
		w.close("clock")
	}
	w.footer()
	w.open(`<devices>`)
	for _, d := range s.Disks {
		w.open(`<disk type="block" device="%s">`, e(d.DevType))
		w.line(`<driver name="phy"/>`)
		w.line(`<source dev="%s"/>`, e(d.Path))
		w.line(`<target dev="%s"/>`, e(d.Target))
		if d.ReadOnly {
			w.line(`<readonly/>`)
		}
		if d.Backend != "" {
			w.line(`<backenddomain name="%s"/>`, e(d.Backend))
		}
		if d.Script {
			w.line(`<script path="/etc/xen/scripts/qubes-block"/>`)
		}
		w.close("disk")
	}
	if n := s.Net; n != nil {
		w.open(`<interface type="ethernet">`)
		w.line(`<mac address="%s"/>`, e(n.MAC))
		w.line(`<ip address="%s"/>`, e(n.IP))
		if n.IP6 != "" {
			w.line(`<ip address="%s" family="ipv6"/>`, e(n.IP6))
		}
		w.line(`<backenddomain name="%s"/>`, e(n.Backend))
		w.line(`<script path="vif-route-qubes"/>`)
		w.close("interface")
	}
	for _, p := range s.PCI {
		attrs := ""
		if p.NoStrictReset {
			attrs = ` nostrictreset="yes"`
		}
		w.open(`<hostdev type="pci" managed="yes"%s>`, attrs)
		src := ""
		if p.Permissive {
			src += ` writeFiltering="no"`
		}
		if p.NoPMFilter {
			src += ` powerManagementFiltering="no"`
		}
		w.open(`<source%s>`, src)
		w.line(`<address domain="%s" bus="%s" slot="%s" function="%s"/>`, p.Domain, p.Bus, p.Slot, p.Function)
		w.close("source")
		w.close("hostdev")
	}
	if st := s.Stubdom; st != nil {
		attrs := fmt.Sprintf(` type="%s" cmdline="%s"`, st.Type, e(st.Cmdline))
		if st.MemoryKiB > 0 {
			attrs += fmt.Sprintf(` memory="%d"`, st.MemoryKiB)
		}
		if st.FullKernel {
			attrs += ` kernel="/usr/libexec/xen/boot/qemu-stubdom-linux-full-kernel" ramdisk="/usr/libexec/xen/boot/qemu-stubdom-linux-full-rootfs"`
		}
		w.line(`<emulator%s/>`, attrs)
		w.line(`<input type="tablet" bus="usb"/>`)
		if st.Sound != "" {
			w.line(`<sound model="%s"/>`, e(st.Sound))
		}
		if st.Video != "" {
			w.open(`<video>`)
			w.line(`<model type="%s"/>`, e(st.Video))
			w.close("video")
			if st.Graphics {
				g := ""
				if st.GuiDomain != "" {
					g += fmt.Sprintf(` domain="%s"`, e(st.GuiDomain))
				}
				if st.GraphicsLog {
					g += ` log_level="2"`
				}
				w.line(`<graphics type="qubes"%s/>`, g)
			}
		}
	}
	w.open(`<console type="pty">`)
	w.line(`<target type="xen" port="0"/>`)
	w.close("console")
	w.close("devices")
	w.close("domain")
	return w.b.String()
}

// QEMUOptions are the host choices for a QEMU/KVM domain.
type QEMUOptions struct {
	// DomainType is "kvm" or "qemu" (TCG); empty: DetectDomainType().
	DomainType string
	// Machine is the machine type; empty: q35.
	Machine string
}

// DetectDomainType is "kvm" where /dev/kvm opens and the CPU announces
// vmx or svm, else "qemu" (TCG emulation).
func DetectDomainType() string {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "qemu"
	}
	f.Close()
	ci, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "qemu"
	}
	defer ci.Close()
	sc := bufio.NewScanner(ci)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "flags"); ok {
			for _, fl := range strings.Fields(rest) {
				if fl == "vmx" || fl == "svm" {
					return "kvm"
				}
			}
			return "qemu"
		}
	}
	return "qemu"
}

// QEMUCmdline adapts the Xen command line for a QEMU guest: the console is
// the first serial port, not hvc0.
func QEMUCmdline(xen string) string {
	words := strings.Split(xen, " ")
	for i, w := range words {
		switch w {
		case "console=hvc0":
			words[i] = "console=ttyS0"
		case "xen_privcmd.unrestricted":
			words[i] = ""
		}
	}
	out := words[:0]
	for _, w := range words {
		if w != "" {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// QEMUXML renders the domain for libvirt's QEMU driver: q35, direct kernel
// boot, virtio disks from the volume files, a virtio balloon with
// statistics and the serial console logged to a file. There is no network:
// the Qubes inter-qube network (vif-route-qubes into the netvm) has no
// counterpart here.
func QEMUXML(s *Spec, o QEMUOptions) string {
	typ := o.DomainType
	if typ == "" {
		typ = DetectDomainType()
	}
	machine := o.Machine
	if machine == "" {
		machine = "q35"
	}
	w := &xw{}
	w.header(s, typ)
	if typ == "kvm" {
		w.line(`<cpu mode="host-passthrough"/>`)
	}
	w.open(`<os>`)
	w.line(`<type arch="x86_64" machine="%s">hvm</type>`, e(machine))
	kernel := s.Kernel
	if kernel == pvgrubPV || kernel == pvgrubPVH {
		kernel = ""
	}
	if kernel != "" && s.HasCmd {
		w.line(`<kernel>%s</kernel>`, e(kernel))
		if s.Initrd != "" {
			w.line(`<initrd>%s</initrd>`, e(s.Initrd))
		}
		w.line(`<cmdline>%s</cmdline>`, e(QEMUCmdline(s.Cmdline)))
	} else {
		w.line(`<boot dev="hd"/>`)
	}
	w.close("os")
	w.open(`<features>`)
	w.line(`<acpi/>`)
	w.line(`<apic/>`)
	w.close("features")
	w.line(`<clock offset="utc"/>`)
	w.footer()
	w.open(`<devices>`)
	sata := 'a'
	for _, d := range s.Disks {
		target, bus := "vd"+strings.TrimPrefix(d.Target, "xvd"), "virtio"
		if d.DevType == "cdrom" {
			// virtio has no CD-ROM: q35's SATA controller.
			target, bus = "sd"+string(sata), "sata"
			sata++
		}
		if strings.HasPrefix(d.Path, "/dev/") {
			w.open(`<disk type="block" device="%s">`, e(d.DevType))
			w.line(`<driver name="qemu" type="raw" cache="none" io="native"/>`)
			w.line(`<source dev="%s"/>`, e(d.Path))
		} else {
			w.open(`<disk type="file" device="%s">`, e(d.DevType))
			w.line(`<driver name="qemu" type="raw" discard="unmap"/>`)
			w.line(`<source file="%s"/>`, e(d.Path))
		}
		w.line(`<target dev="%s" bus="%s"/>`, e(target), bus)
		if d.ReadOnly {
			w.line(`<readonly/>`)
		}
		w.close("disk")
	}
	if s.ConsoleLog != "" {
		w.open(`<serial type="file">`)
		w.line(`<source path="%s" append="on"/>`, e(s.ConsoleLog))
		w.line(`<target port="0"/>`)
		w.close("serial")
	}
	w.open(`<memballoon model="virtio">`)
	w.line(`<stats period="1"/>`)
	w.close("memballoon")
	w.close("devices")
	w.close("domain")
	return w.b.String()
}

// DomainXML renders the spec for the connection's hypervisor.
func (c *Conn) DomainXML(s *Spec, o QEMUOptions) string { return DomainXML(c.URI, s, o) }

// DomainXML renders the spec for the hypervisor of a URI.
func DomainXML(uri string, s *Spec, o QEMUOptions) string {
	switch Driver(uri) {
	case "xen":
		return XenXML(s)
	case "test":
		o.DomainType = "test" // libvirt's test driver takes only its own type
	}
	return QEMUXML(s, o)
}
