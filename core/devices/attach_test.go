package devices

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

// fakeHV keeps each running domain's hot-plugged elements; it stands for
// libvirt in these unit tests only (the live test uses the real driver).
type fakeHV struct {
	running map[string][]string
	flavor  Flavor
}

func (f *fakeHV) Running(context.Context) ([]string, error) {
	var out []string
	for k := range f.running {
		out = append(out, k)
	}
	return out, nil
}

func (f *fakeHV) LiveXML(_ context.Context, vm string) (string, error) {
	devs, ok := f.running[vm]
	if !ok {
		return "", fmt.Errorf("not running")
	}
	return "<domain><devices><disk type=\"file\"><source file=\"/x/root.img\"/><target dev=\"xvda\"/></disk>" +
		strings.Join(devs, "") + "</devices></domain>", nil
}

var reTarget = regexp.MustCompile(`target dev="([^"]+)"|address [^/]*`)

func (f *fakeHV) AttachDevice(_ context.Context, vm, x string) error {
	f.running[vm] = append(f.running[vm], x)
	return nil
}

func (f *fakeHV) DetachDevice(_ context.Context, vm, x string) error {
	key := reTarget.FindString(x)
	for i, d := range f.running[vm] {
		if reTarget.FindString(d) == key {
			f.running[vm] = append(f.running[vm][:i], f.running[vm][i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("no such device")
}

func (f *fakeHV) Flavor() Flavor { return f.flavor }

// blockTree makes /sys/block with sdb (read-write) and sr0 (read-only).
func blockTree(t *testing.T) SysFS {
	root := t.TempDir()
	for name, v := range map[string][3]string{"sdb": {"8:16", "2048", "0"}, "sr0": {"11:0", "4096", "1"}} {
		dir := filepath.Join(root, "block", name)
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "dev"), []byte(v[0]), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "size"), []byte(v[1]), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "ro"), []byte(v[2]), 0o644))
	}
	return SysFS{Root: root}
}

func testManager(t *testing.T) (*Manager, *fakeHV) {
	app, _ := parseFile(t, "assignments.xml")
	hv := &fakeHV{running: map[string][]string{"sys-net": nil, "sys-firewall": nil}, flavor: Xen}
	return &Manager{App: app, Disc: &Discoverer{Sys: blockTree(t), UdevData: t.TempDir(), MountInfo: "/dev/null"}, HV: hv}, hv
}

func TestDiskXML(t *testing.T) {
	got := DiskXML(Xen, "/dev/sda", "sys-usb", BlockOptions{FrontendDev: "xvdi", ReadOnly: true, DevType: "cdrom"})
	want := `<disk type="block" device="cdrom">
  <driver name="phy"/>
  <source dev="/dev/sda"/>
  <target dev="xvdi"/>
  <readonly/>
  <backenddomain name="sys-usb"/>
</disk>
`
	if got != want {
		t.Errorf("xen:\n%s", got)
	}
	got = DiskXML(QEMU, "/dev/loop3", "dom0", BlockOptions{FrontendDev: "xvdj"})
	want = `<disk type="block" device="disk">
  <driver name="qemu" type="raw"/>
  <source dev="/dev/loop3"/>
  <target dev="xvdj" bus="usb"/>
</disk>
`
	if got != want {
		t.Errorf("qemu:\n%s", got)
	}
}

func TestHostdevPCIXML(t *testing.T) {
	got := HostdevPCIXML(Xen, SBDF{0, 0xc6, 0, 0}, true, true, false)
	want := `<hostdev mode="subsystem" type="pci" managed="yes" nostrictreset="yes">
  <source writeFiltering="no">
    <address domain="0x0000" bus="0xc6" slot="0x00" function="0x0"/>
  </source>
</hostdev>
`
	if got != want {
		t.Errorf("got:\n%s", got)
	}
	if got := HostdevPCIXML(Xen, SBDF{0, 0, 0x14, 0}, false, false, true); !strings.Contains(got, `<source powerManagementFiltering="no">`) || strings.Contains(got, "nostrictreset") {
		t.Errorf("s0ix:\n%s", got)
	}
}

// Live XML of a running domain: block disks (not the qube's own volumes),
// PCI hostdevs turned back into PCI paths.
func TestParseLiveXML(t *testing.T) {
	x := `<domain type="xen"><devices>
<disk type="block" device="disk"><source dev="/dev/mapper/vg-root"/><target dev="xvda"/></disk>
<disk type="block" device="cdrom"><source dev="/dev/sr0"/><target dev="xvdd"/><readonly/><backenddomain name="sys-usb"/></disk>
<disk type="block" device="disk"><source dev="/dev/loop1"/><target dev="xvdi"/></disk>
<hostdev mode="subsystem" type="pci" managed="yes"><source><address domain="0x0000" bus="0xc6" slot="0x00" function="0x0"/></source></hostdev>
</devices></domain>`
	as, targets, err := ParseLiveXML(x, fixtureSys(), nil)
	must(t, err)
	var got []string
	for _, a := range as {
		var o []string
		for _, kv := range a.Options {
			o = append(o, kv.Key+"="+kv.Value)
		}
		got = append(got, a.Class+" "+a.Port.String()+" "+strings.Join(o, ","))
	}
	want := "block sys-usb:sr0 frontend-dev=xvdd,read-only=yes,devtype=cdrom\nblock dom0:loop1 frontend-dev=xvdi,read-only=no\npci dom0:c0_03.5-00_00.0-00_00.0 "
	if strings.Join(got, "\n") != want {
		t.Errorf("got\n%s", strings.Join(got, "\n"))
	}
	if strings.Join(targets, ",") != "xvda,xvdd,xvdi" {
		t.Errorf("targets %v", targets)
	}
}

func TestFreeFrontend(t *testing.T) {
	if f, _ := FreeFrontend([]string{"xvda", "xvdi"}, false); f != "xvdj" {
		t.Errorf("got %s", f)
	}
	if f, _ := FreeFrontend(nil, true); f != "xvdd" {
		t.Errorf("cdrom got %s", f)
	}
	var used []string
	for c := 'i'; c <= 'z'; c++ {
		used = append(used, "xvd"+string(c))
	}
	if f, _ := FreeFrontend(used, false); f != "xvdaa" {
		t.Errorf("after xvdz got %s", f)
	}
}

// Attach, see it in the live state, refuse a second attach, detach.
func TestAttachDetach(t *testing.T) {
	m, hv := testManager(t)
	ctx := context.Background()
	vm, _ := m.App.Domain("sys-firewall")
	dev, ok := m.Disc.BlockDevice("sdb")
	if !ok {
		t.Fatal("sdb not found")
	}
	must(t, m.Attach(ctx, vm, dev, []core.Opt{{Key: "read-only", Value: "true"}}))
	if len(hv.running["sys-firewall"]) != 1 || !strings.Contains(hv.running["sys-firewall"][0], `<target dev="xvdi"/>`) ||
		!strings.Contains(hv.running["sys-firewall"][0], "<readonly/>") {
		t.Fatalf("attached XML %q", hv.running["sys-firewall"])
	}
	as, err := m.Attachments(ctx, Block)
	must(t, err)
	if len(as) != 1 || as[0].VM != "sys-firewall" || as[0].Port.String() != "dom0:sdb" {
		t.Fatalf("attachments %+v", as)
	}
	if err := m.Attach(ctx, vm, dev, nil); err == nil || err.Error() != "device dom0:sdb of class block already attached to sys-firewall" {
		t.Errorf("second attach: %v", err)
	}
	other, _ := m.App.Domain("sys-net")
	if err := m.Attach(ctx, other, dev, nil); err == nil || err.Error() != "Device dom0:sdb already attached to sys-firewall" {
		t.Errorf("attach elsewhere: %v", err)
	}
	// the next one takes the next free frontend
	sr0, _ := m.Disc.BlockDevice("sr0")
	must(t, m.Attach(ctx, vm, sr0, nil))
	if !strings.Contains(hv.running["sys-firewall"][1], `<target dev="xvdj"/>`) {
		t.Errorf("second frontend: %s", hv.running["sys-firewall"][1])
	}
	must(t, m.Detach(ctx, vm, dev.Port))
	if err := m.Detach(ctx, vm, dev.Port); err == nil || err.Error() != "device dom0:sdb of class block not attached to sys-firewall" {
		t.Errorf("detach twice: %v", err)
	}
	if len(hv.running["sys-firewall"]) != 1 {
		t.Errorf("left %q", hv.running["sys-firewall"])
	}
}

// The refusals of spec §5, §6.3 and §7 for attach and detach.
func TestAttachRefusals(t *testing.T) {
	m, _ := testManager(t)
	ctx := context.Background()
	sdb, _ := m.Disc.BlockDevice("sdb")
	sr0, _ := m.Disc.BlockDevice("sr0")
	halted, _ := m.App.Domain("personal")
	fw, _ := m.App.Domain("sys-firewall")
	pci := &Device{Port: Port{Backend: "dom0", ID: "c0_03.5", Class: PCI}, DeviceID: "0000:0000::?******", Interfaces: []Interface{Unknown}}
	m.Disc.Sys = fixtureSys()
	must(t, m.App.Set(fw, "virt_mode", "pvh"))
	for _, c := range []struct {
		vm   *core.Domain
		dev  *Device
		opts []core.Opt
		want string
	}{
		{halted, sdb, nil, "VM not running, cannot attach device, do you mean 'assign'?"},
		{m.App.Dom0(), pci, nil, "Can't attach PCI device to dom0"},
		{fw, pci, nil, "Can't attach PCI device to VM in pvh mode"},
		{fw, sr0, []core.Opt{{Key: "read-only", Value: "no"}}, "This device can be attached only read-only"},
		{fw, sdb, []core.Opt{{Key: "devtype", Value: "floppy"}}, "devtype option can only have 'disk' or 'cdrom' value"},
		{fw, sdb, []core.Opt{{Key: "frontend-dev", Value: "hda"}}, `frontend-dev option must start with 'xvd' or 'sd', got "hda"`},
		{fw, sdb, []core.Opt{{Key: "colour", Value: "red"}}, "Unsupported option colour"},
		{fw, sdb, []core.Opt{{Key: "read-only", Value: "maybe"}}, `read-only option must be a boolean, got "maybe"`},
		{fw, &Device{Port: Port{Backend: "sys-usb", ID: "sda", Class: Block}}, nil, "Domain sys-usb needs to be running to attach device from it"},
	} {
		if err := m.Attach(ctx, c.vm, c.dev, c.opts); err == nil || err.Error() != c.want {
			t.Errorf("attach %s to %s: %v, want %q", c.dev.Port, c.vm.Name(), err, c.want)
		}
	}
	must(t, m.App.Set(fw, "devices_denied", "b******"))
	if err := m.Attach(ctx, fw, sdb, nil); err == nil || err.Error() != "Device exposes a banned interface: b******" {
		t.Errorf("denied: %v", err)
	}
}

func TestDetachRequired(t *testing.T) {
	m, _ := testManager(t)
	ctx := context.Background()
	vm, _ := m.App.Domain("sys-net")
	sdb, _ := m.Disc.BlockDevice("sdb")
	must(t, m.Attach(ctx, vm, sdb, nil))
	must(t, Assign(m.App, vm, &Assignment{VirtualDevice: VirtualDevice{Port: sdb.Port, DeviceID: Any}, Mode: Required}))
	if err := m.Detach(ctx, vm, sdb.Port); err == nil || err.Error() != "Can not detach a required device from a non halted qube. You need to unassign device first." {
		t.Errorf("detach required: %v", err)
	}
}

// Required devices must be present at start and go into the config.
func TestStartConfig(t *testing.T) {
	m, _ := testManager(t)
	blockSys := m.Disc.Sys
	vm, _ := m.App.Domain("sys-net")
	UnassignAll(vm, PCI)
	UnassignAll(vm, Block)
	must(t, Assign(m.App, vm, &Assignment{VirtualDevice: VirtualDevice{Port: Port{Backend: "dom0", ID: "sdz", Class: Block}, DeviceID: Any}, Mode: Required}))
	if _, err := m.StartConfig(vm); err == nil || err.Error() != "Block device dom0:sdz not available" {
		t.Errorf("missing device: %v", err)
	}
	UnassignAll(vm, Block)
	m.Disc.Sys = fixtureSys()
	must(t, Assign(m.App, vm, &Assignment{VirtualDevice: VirtualDevice{Port: Port{Backend: "dom0", ID: "00_1f.0", Class: PCI}, DeviceID: Any}, Mode: Required}))
	if _, err := m.StartConfig(vm); err == nil || err.Error() != "Pci device dom0:00_1f.0 not available" {
		t.Errorf("missing pci device: %v", err)
	}
	UnassignAll(vm, PCI)
	must(t, Assign(m.App, vm, &Assignment{VirtualDevice: VirtualDevice{Port: Port{Backend: "dom0", ID: "00_18.4", Class: PCI}, DeviceID: Any}, Mode: Required}))
	if xs, err := m.StartConfig(vm); err != nil || len(xs) != 0 {
		t.Errorf("present pci device: %v %v (PCI goes into the spec, not here)", xs, err)
	}
	UnassignAll(vm, PCI)
	m.Disc.Sys = blockSys
	must(t, Assign(m.App, vm, &Assignment{VirtualDevice: VirtualDevice{Port: Port{Backend: "dom0", ID: "sdb", Class: Block}, DeviceID: Any}, Mode: Required,
		Options: []core.Opt{{Key: "read-only", Value: "yes"}}}))
	must(t, Assign(m.App, vm, &Assignment{VirtualDevice: VirtualDevice{Port: Port{Backend: "dom0", ID: "sr0", Class: Block}, DeviceID: Any}, Mode: AutoAttach}))
	xs, err := m.StartConfig(vm)
	must(t, err)
	if len(xs) != 1 || !strings.Contains(xs[0], `<source dev="/dev/sdb"/>`) || !strings.Contains(xs[0], `<target dev="xvdi"/>`) || !strings.Contains(xs[0], "<readonly/>") {
		t.Errorf("config %q", xs)
	}
	// after start, the auto-attach one is attached, the required one is not touched
	got := m.AutoAttach(context.Background(), vm, func(s string) { t.Error(s) })
	if len(got) != 1 || got[0].String() != "dom0:sr0" {
		t.Errorf("auto-attached %v", got)
	}
}
