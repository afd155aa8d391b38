package virt

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

var update = flag.Bool("update", false, "rewrite golden files")

// loadTestApp loads testdata/qubes.xml into a temporary state directory
// with kernel "dummy" (vmlinuz, modules.img and, unless noInitramfs, an
// initramfs).
func loadTestApp(t *testing.T, noInitramfs bool) (*core.App, string) {
	t.Helper()
	state := t.TempDir()
	kdir := filepath.Join(state, "vm-kernels", "dummy")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := []string{"vmlinuz", "modules.img"}
	if !noInitramfs {
		files = append(files, "initramfs")
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(kdir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile("testdata/qubes.xml")
	if err != nil {
		t.Fatal(err)
	}
	data := strings.ReplaceAll(string(raw), "STATE", state)
	a, err := core.Parse([]byte(data), "qubes.xml", state, core.Host{Xen: true, MemMiB: 16000, CPUs: 4})
	if err != nil {
		t.Fatal(err)
	}
	return a, state
}

func volumeDisk(state string) func(v *core.VolumeConfig) (string, bool) {
	return func(v *core.VolumeConfig) (string, bool) {
		return filepath.Join(state, v.Vid+"-dirty.img"), true
	}
}

type xmlCase struct {
	name        string
	noInitramfs bool
	setup       func(t *testing.T, a *core.App, d *core.Domain)
	qemu        bool
	assigned    []Disk
	// facts from spec/start.md §4.6 the output must show (and must not).
	has, hasNot []string
}

func set(t *testing.T, a *core.App, d *core.Domain, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		if err := a.Set(d, kv[i], kv[i+1]); err != nil {
			t.Fatalf("set %s=%s: %v", kv[i], kv[i+1], err)
		}
	}
}

const vecCmdline = "<cmdline>systemd.machine_id=7db78950c467486394d1af59806384ea root=/dev/mapper/dmroot ro nomodeset console=hvc0 rd_NO_PLYMOUTH rd.plymouth.enable=0 plymouth.enable=0 xen_privcmd.unrestricted swiotlb=2048</cmdline>"

func pciAssign(d *core.Domain) {
	d.Devices = append(d.Devices, &core.DeviceClass{Class: "pci", Devices: []*core.DeviceAssignment{
		{Backend: "dom0", Port: "00_00.0", Mode: "required", Identity: "*"}}})
}

var xmlCases = []xmlCase{
	{name: "xen-pv", setup: func(t *testing.T, a *core.App, d *core.Domain) { set(t, a, d, "virt_mode", "pv") },
		has: []string{`<memory unit="MiB">500</memory>`, `<currentMemory unit="MiB">400</currentMemory>`,
			`<type arch="x86_64" machine="xenpv">linux</type>`, "/vm-kernels/dummy/vmlinuz</kernel>",
			"/vm-kernels/dummy/initramfs</initrd>", vecCmdline, "<features>\n    </features>",
			"/vm-kernels/dummy/modules.img\"/>\n            <target dev=\"xvdd\"/>"},
		hasNot: []string{"<cpu", "<pae/>", "<interface"}},
	{name: "xen-pvh", setup: func(t *testing.T, a *core.App, d *core.Domain) { set(t, a, d, "virt_mode", "pvh") },
		has: []string{`<memory unit="MiB">500</memory>`, `<cpu mode="host-passthrough">`,
			`<type arch="x86_64" machine="xenpvh">xenpvh</type>`, "<initrd>", vecCmdline,
			"<pae/>\n        <acpi/>\n        <apic/>\n        <viridian/>", `<feature name="invtsc" policy="require"/>`}},
	{name: "xen-pvh-noinitramfs-maxmem0", noInitramfs: true,
		setup:  func(t *testing.T, a *core.App, d *core.Domain) { set(t, a, d, "virt_mode", "pvh", "maxmem", "0") },
		has:    []string{`<memory unit="MiB">400</memory>`, `<currentMemory unit="MiB">400</currentMemory>`},
		hasNot: []string{"<initrd>"}},
	{name: "xen-hvm-nokernel", setup: func(t *testing.T, a *core.App, d *core.Domain) {
		set(t, a, d, "virt_mode", "hvm", "maxmem", "0", "kernel", "")
		if err := a.SetNone(d, "audiovm"); err != nil {
			t.Fatal(err)
		}
	},
		has: []string{`<memory unit="MiB">400</memory>`, `<loader type="rom">hvmloader</loader>`,
			`<emulator type="stubdom-linux" cmdline="-qubes-audio:audiovm_xid=-1"/>`, `<boot dev="cdrom"/>`,
			`<clock offset="variable" adjustment="0" basis="utc"/>`, `<graphics type="qubes"/>`},
		hasNot: []string{"<cmdline>", "<kernel>", "xvdd"}},
	{name: "xen-hvm-kernel", setup: func(t *testing.T, a *core.App, d *core.Domain) {
		set(t, a, d, "virt_mode", "hvm", "maxmem", "0")
		if err := a.SetNone(d, "audiovm"); err != nil {
			t.Fatal(err)
		}
	},
		has:    []string{`<loader type="rom">hvmloader</loader>`, vecCmdline, `cmdline="-qubes-audio:audiovm_xid=-1"`},
		hasNot: []string{"<kernel>"}},
	{name: "xen-hvm-pci", setup: func(t *testing.T, a *core.App, d *core.Domain) {
		set(t, a, d, "virt_mode", "hvm")
		if err := a.SetFeature(d, "supported-service.meminfo-writer", "1"); err != nil {
			t.Fatal(err)
		}
		pciAssign(d)
	},
		has: []string{`<memory unit="MiB">400</memory>`, `<e820_host state="on"/>`,
			`<hostdev type="pci" managed="yes">`, `<address domain="0x0000" bus="0x00" slot="0x00" function="0x0"/>`}},
	{name: "xen-hvm-netvm", setup: func(t *testing.T, a *core.App, d *core.Domain) {
		set(t, a, d, "virt_mode", "hvm", "netvm", "test-net-vm", "audiovm", "dom0")
	},
		has: []string{`cmdline="-qubes-audio:audiovm_xid=0 -qubes-net:client_ip=10.137.0.1,dns_0=10.139.1.1,dns_1=10.139.1.2,gw=10.137.0.2,netmask=255.255.255.255"`,
			"<interface type=\"ethernet\">\n            <mac address=\"00:16:3e:5e:6c:00\"/>\n            <ip address=\"10.137.0.1\"/>\n            <backenddomain name=\"test-net-vm\"/>\n            <script path=\"vif-route-qubes\"/>"}},
	{name: "xen-pvh-netvm-ipv6", setup: func(t *testing.T, a *core.App, d *core.Domain) {
		set(t, a, d, "netvm", "test-net-vm")
		net, _ := a.Domain("test-net-vm")
		if err := a.SetFeature(net, "ipv6", "1"); err != nil {
			t.Fatal(err)
		}
	},
		has: []string{`<ip address="fd09:24ef:4179::a89:1" family="ipv6"/>`}},
	{name: "xen-hvm-drives", assigned: []Disk{{Path: "/dev/loop7", DevType: "cdrom", ReadOnly: true}, {Path: "/dev/sdb1", DevType: "disk"},
		{Path: "/dev/xvdq", DevType: "disk", Backend: "test-net-vm"}},
		setup: func(t *testing.T, a *core.App, d *core.Domain) {
			set(t, a, d, "virt_mode", "hvm", "kernel", "")
			net, _ := a.Domain("test-net-vm")
			if err := a.SetFeature(net, "qubes-agent-version", "4.1"); err != nil {
				t.Fatal(err)
			}
		},
		has: []string{"<source dev=\"/dev/loop7\"/>\n            <target dev=\"xvdd\"/>\n            <readonly/>",
			"<source dev=\"/dev/sdb1\"/>\n            <target dev=\"xvdi\"/>\n            <script",
			"<target dev=\"xvdj\"/>\n            <backenddomain name=\"test-net-vm\"/>\n        </disk>", `<disk type="block" device="cdrom">`}},
	{name: "qemu-drives", qemu: true, assigned: []Disk{{Path: "/dev/loop7", DevType: "cdrom", ReadOnly: true}, {Path: "/dev/sdb1", DevType: "disk"}},
		setup: func(t *testing.T, a *core.App, d *core.Domain) {},
		has: []string{"<source dev=\"/dev/loop7\"/>\n            <target dev=\"sda\" bus=\"sata\"/>\n            <readonly/>",
			"<source dev=\"/dev/sdb1\"/>\n            <target dev=\"vdj\" bus=\"virtio\"/>"}},
	{name: "qemu-tcg", qemu: true, setup: func(t *testing.T, a *core.App, d *core.Domain) {
		set(t, a, d, "netvm", "test-net-vm")
	},
		has: []string{`<domain type="qemu">`, `machine="q35">hvm</type>`, "/vm-kernels/dummy/vmlinuz</kernel>",
			"console=ttyS0", `<target dev="vdb" bus="virtio"/>`, `<memballoon model="virtio">`, `<stats period="1"/>`,
			`<serial type="file">`, "/appvms/test-inst-vm/console.log"},
		hasNot: []string{"<interface", "console=hvc0", "xen_privcmd", "<cpu"}},
}

// Domain XML for Xen (the reference's test_600 vectors) and QEMU, against
// golden files, plus the facts of spec/start.md §4.6 checked one by one.
func TestGoldenDomainXML(t *testing.T) {
	for _, tc := range xmlCases {
		t.Run(tc.name, func(t *testing.T) {
			a, state := loadTestApp(t, tc.noInitramfs)
			d, err := a.Domain("test-inst-vm")
			if err != nil {
				t.Fatal(err)
			}
			tc.setup(t, a, d)
			in := SpecInput{VolumeDisk: volumeDisk(state), Assigned: tc.assigned}
			if tc.qemu {
				in.ConsoleLog = filepath.Join(a.VMDir(d), "console.log")
			}
			s, err := NewSpec(a, d, in)
			if err != nil {
				t.Fatal(err)
			}
			var out string
			if tc.qemu {
				out = QEMUXML(s, QEMUOptions{DomainType: "qemu"})
			} else {
				out = XenXML(s)
			}
			out = strings.ReplaceAll(out, state, "/var/lib/qubes")
			golden := filepath.Join("testdata", tc.name+".xml")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if out != string(want) {
				t.Errorf("XML differs from %s (run with -update and review):\n%s", golden, out)
			}
			for _, h := range tc.has {
				if !strings.Contains(out, h) {
					t.Errorf("missing %q in:\n%s", h, out)
				}
			}
			for _, h := range tc.hasNot {
				if strings.Contains(out, h) {
					t.Errorf("unexpected %q in:\n%s", h, out)
				}
			}
		})
	}
}

func TestCmdlineFeatures(t *testing.T) {
	a, _ := loadTestApp(t, false)
	d, _ := a.Domain("test-inst-vm")
	spec := func() string {
		s, err := NewSpec(a, d, SpecInput{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Cmdline
	}
	if err := a.SetFeature(d, "no-nomodeset", "1"); err != nil {
		t.Fatal(err)
	}
	if c := spec(); strings.Contains(c, "nomodeset") || !strings.Contains(c, " ro console=hvc0") {
		t.Errorf("no-nomodeset: %q", c)
	}
	a.SetFeature(d, "apparmor", "1")
	if c := spec(); !strings.HasSuffix(c, "swiotlb=2048 apparmor=1 security=apparmor") {
		t.Errorf("apparmor: %q", c)
	}
	a.SetFeature(d, "no-default-kernelopts", "1")
	set(t, a, d, "kernelopts", "quiet")
	if c := spec(); c != "quiet" {
		t.Errorf("no-default-kernelopts: %q, want quiet", c)
	}
}

func TestQEMUCmdline(t *testing.T) {
	got := QEMUCmdline("root=/dev/mapper/dmroot ro nomodeset console=hvc0 xen_privcmd.unrestricted swiotlb=2048")
	if got != "root=/dev/mapper/dmroot ro nomodeset console=ttyS0 swiotlb=2048" {
		t.Errorf("QEMUCmdline = %q", got)
	}
}

// A required PCI device behind a bridge is addressed by where the host's
// sysfs puts it, not by the last hop of its path; without a way to resolve
// it the start is refused rather than handing the wrong device to the qube.
func TestRequiredPCIBehindBridge(t *testing.T) {
	a, _ := loadTestApp(t, false)
	d, _ := a.Domain("test-inst-vm")
	set(t, a, d, "virt_mode", "hvm")
	d.Devices = append(d.Devices, &core.DeviceClass{Class: "pci", Devices: []*core.DeviceAssignment{
		{Backend: "dom0", Port: "00_08.1-00_00.2", Mode: "required", Identity: "*"}}})
	resolve := func(port string) (string, bool) { return "0000:02:00.2", port == "00_08.1-00_00.2" }
	s, err := NewSpec(a, d, SpecInput{ResolvePCI: resolve})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.PCI) != 1 || s.PCI[0].Bus != "0x02" || s.PCI[0].Slot != "0x00" || s.PCI[0].Function != "0x2" {
		t.Fatalf("PCI = %+v, want bus 0x02 slot 0x00 function 0x2", s.PCI)
	}
	if _, err := NewSpec(a, d, SpecInput{}); err == nil || !strings.Contains(err.Error(), "cannot find its address") {
		t.Fatalf("without a resolver: %v, want a refusal", err)
	}
}
