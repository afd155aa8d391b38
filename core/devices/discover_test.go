package devices

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every PCI device of the fixture tree is listed with its path port id and
// SBDF; the tree has no vendor/class files, so descriptions are unknown.
func TestPCIDevicesFixture(t *testing.T) {
	d := &Discoverer{Sys: fixtureSys()}
	ds, err := d.PCIDevices()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range ds {
		got = append(got, x.String()+" "+x.Extra[0].Value+" "+x.DeviceID)
	}
	want := []string{
		"dom0:00_08.1 0000:00:08.1 0000:0000::?******",
		"dom0:00_08.1-00_00.0 0000:02:00.0 0000:0000::?******",
		"dom0:00_08.1-00_00.2 0000:02:00.2 0000:0000::?******",
		"dom0:00_18.0 0000:00:18.0 0000:0000::?******",
		"dom0:00_18.1 0000:00:18.1 0000:0000::?******",
		"dom0:00_18.2 0000:00:18.2 0000:0000::?******",
		"dom0:00_18.3 0000:00:18.3 0000:0000::?******",
		"dom0:00_18.4 0000:00:18.4 0000:0000::?******",
		"dom0:c0_03.5 0000:c0:03.5 0000:0000::?******",
		"dom0:c0_03.5-00_00.0 0000:c5:00.0 0000:0000::?******",
		"dom0:c0_03.5-00_00.0-00_00.0 0000:c6:00.0 0000:0000::?******",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s := ds[0].Description(); s != "?******: unknown vendor unknown pci device" {
		t.Errorf("description %q", s)
	}
	if dev, ok := d.PCIDevice("c0_03.5-00_00.0-00_00.0"); !ok || dev.Extra[0].Value != "0000:c6:00.0" {
		t.Errorf("lookup by path: %v %v", dev, ok)
	}
	if _, ok := d.PCIDevice("02_00.2"); ok {
		t.Error("legacy id looked up as a current port")
	}
}

const testPCIIDs = `# test
8086  Intel Corporation
	8cb1  9 Series Chipset Family USB xHCI Controller
		1028 0001  subsystem
10ec  Realtek Semiconductor Co., Ltd.
C 02  Network controller
	00  Ethernet controller
C 0c  Serial bus controller
	03  USB controller
		30  XHCI
C 11  Signal processing controller
`

// A host-like tree with vendor/device/class files: ids, names, classes.
func TestPCIDevicesNames(t *testing.T) {
	root := t.TempDir()
	mk := func(sbdf, vendor, device, class string) {
		dir := filepath.Join(root, "devices/pci0000:00", sbdf)
		must(t, os.MkdirAll(dir, 0o755))
		for k, v := range map[string]string{"vendor": vendor, "device": device, "class": class} {
			must(t, os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644))
		}
		must(t, os.MkdirAll(filepath.Join(root, "bus/pci/devices"), 0o755))
		must(t, os.Symlink("../../../devices/pci0000:00/"+sbdf, filepath.Join(root, "bus/pci/devices", sbdf)))
	}
	mk("0000:00:14.0", "0x8086", "0x8cb1", "0x0c0330")
	mk("0000:00:1f.6", "0x10ec", "0x8168", "0x020000")
	mk("0000:00:1f.7", "0x1234", "0x0001", "0x118000")
	d := &Discoverer{Sys: SysFS{Root: root}, PCIIDs: ParseIDs([]byte(testPCIIDs))}
	ds, err := d.PCIDevices()
	if err != nil || len(ds) != 3 {
		t.Fatalf("%v %v", ds, err)
	}
	for i, want := range []string{
		"00_14.0 0x8086:0x8cb1::p0c0330 PCI_USB: Intel Corporation 9 Series Chipset Family USB xHCI Controller",
		"00_1f.6 0x10ec:0x8168::p020000 Network: Realtek Semiconductor Co., Ltd. unknown pci device",
		"00_1f.7 0x1234:0x0001::p118000 Signal processing controller: unknown vendor unknown pci device",
	} {
		if got := ds[i].ID + " " + ds[i].DeviceID + " " + ds[i].Description(); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

// USB devices and their interfaces from a bus/usb/devices tree.
func TestUSBDevices(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "bus/usb/devices")
	write := func(name string, kv map[string]string) {
		must(t, os.MkdirAll(filepath.Join(dir, name), 0o755))
		for k, v := range kv {
			must(t, os.WriteFile(filepath.Join(dir, name, k), []byte(v+"\n"), 0o644))
		}
	}
	write("usb1", map[string]string{"idVendor": "1d6b", "idProduct": "0002"})
	write("1-1.2", map[string]string{"idVendor": "0781", "idProduct": "5581", "manufacturer": "SanDisk", "product": "Ultra", "serial": "4C53 0001", "busnum": "1", "devnum": "5"})
	write("1-1.2:1.0", map[string]string{"bInterfaceClass": "08", "bInterfaceSubClass": "06", "bInterfaceProtocol": "50"})
	write("2-3", map[string]string{"idVendor": "046d", "idProduct": "c52b", "busnum": "2", "devnum": "2"})
	write("2-3:1.0", map[string]string{"bInterfaceClass": "03", "bInterfaceSubClass": "01", "bInterfaceProtocol": "01"})
	write("2-3:1.1", map[string]string{"bInterfaceClass": "03", "bInterfaceSubClass": "01", "bInterfaceProtocol": "02"})
	d := &Discoverer{Sys: SysFS{Root: root}, USBIDs: ParseIDs([]byte("046d  Logitech, Inc.\n\tc52b  Unifying Receiver\n"))}
	ds, err := d.USBDevices()
	if err != nil || len(ds) != 2 {
		t.Fatalf("%v %v", ds, err)
	}
	for i, want := range []string{
		"1-1_2 0x0781:0x5581:4C53_0001:u080650 USB_Storage: SanDisk Ultra",
		"2-3 0x046d:0xc52b::u030101u030102 Keyboard: Logitech, Inc. Unifying Receiver",
	} {
		if got := ds[i].ID + " " + ds[i].DeviceID + " " + ds[i].Description(); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	}
}

// A loop device made here (as root) is listed from the real /sys/block
// with its size, backing file and read-only flag.
func TestBlockLoopDevice(t *testing.T) {
	loop := makeLoop(t, 3*1024*1024, true)
	name := filepath.Base(loop)
	d := &Discoverer{}
	ds, err := d.BlockDevices()
	if err != nil {
		t.Fatal(err)
	}
	var dev *Device
	for _, x := range ds {
		if x.ID == name {
			dev = x
		}
	}
	if dev == nil {
		t.Fatalf("%s not listed among %d block devices", name, len(ds))
	}
	if dev.Size != 3*1024*1024 || !dev.ReadOnly || dev.DeviceID != ":None" || dev.DevPath != loop {
		t.Errorf("device %+v", dev)
	}
	if !strings.HasSuffix(dev.Name, "disk.img") || !strings.Contains(dev.Description(), "disk.img") {
		t.Errorf("backing file not shown: %q", dev.Description())
	}
	if got, ok := d.BlockDevice(name); !ok || got.Size != dev.Size {
		t.Errorf("lookup: %v %v", got, ok)
	}
	if _, ok := d.BlockDevice("../sda"); ok {
		t.Error("path in port id accepted")
	}
}

// Partitions are listed below their disk with the disk's id as prefix.
func TestBlockPartitions(t *testing.T) {
	root := t.TempDir()
	mk := func(rel, dev, size string) {
		dir := filepath.Join(root, "block", rel)
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "dev"), []byte(dev+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "size"), []byte(size+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "ro"), []byte("0\n"), 0o644))
	}
	mk("sdb", "8:16", "2048")
	mk("sdb/sdb1", "8:17", "1024")
	must(t, os.WriteFile(filepath.Join(root, "block/sdb/sdb1/partition"), []byte("1\n"), 0o644))
	mk("sda", "8:0", "4096")
	mk("sda/sda1", "8:1", "4000")
	must(t, os.WriteFile(filepath.Join(root, "block/sda/sda1/partition"), []byte("1\n"), 0o644))
	mk("loop7", "7:7", "0")
	udev := t.TempDir()
	must(t, os.WriteFile(filepath.Join(udev, "b8:16"), []byte("E:ID_MODEL=Cruzer_Blade\nE:ID_FS_LABEL=\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(udev, "b8:17"), []byte("E:ID_FS_LABEL=PHOTOS\n"), 0o644))
	mi := filepath.Join(t.TempDir(), "mountinfo")
	must(t, os.WriteFile(mi, []byte("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), 0o644))
	d := &Discoverer{Sys: SysFS{Root: root}, UdevData: udev, MountInfo: mi}
	ds, err := d.BlockDevices()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range ds {
		got = append(got, x.ID+" "+x.DeviceID+" "+x.Extra[0].Value+" "+x.Description())
	}
	want := "sdb :None 1048576 Block_Storage: unknown vendor Cruzer Blade\n" +
		"sdb1 :None:1 524288 Block_Storage: unknown vendor PHOTOS"
	if strings.Join(got, "\n") != want {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeLoop sets a loop device up on a new file; it is removed at the end.
func makeLoop(t *testing.T, size int64, ro bool) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup (util-linux) is missing")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	must(t, os.WriteFile(img, nil, 0o644))
	must(t, os.Truncate(img, size))
	args := []string{"-f", "--show"}
	if ro {
		args = append(args, "-r")
	}
	out, err := exec.Command("losetup", append(args, img)...).CombinedOutput()
	if err != nil {
		t.Skipf("losetup cannot set a loop device up here: %s", strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// The ids files are read at the first lookup only, and a missing file
// gives unknown names.
func TestLazyIDs(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pci.ids")
	must(t, os.WriteFile(f, []byte(testPCIIDs), 0o644))
	ids := LoadIDs([]string{filepath.Join(t.TempDir(), "missing"), f})
	if ids.loaded {
		t.Fatal("parsed before use")
	}
	if ids.Vendor("8086") != "Intel Corporation" || ids.Class("0c", "03") != "USB controller" || ids.Class("11", "80") != "Signal processing controller" {
		t.Errorf("names %q %q", ids.Vendor("8086"), ids.Class("0c", "03"))
	}
	if LoadIDs([]string{"/nonexistent"}).Product("8086", "8cb1") != "" {
		t.Error("name from nowhere")
	}
}
