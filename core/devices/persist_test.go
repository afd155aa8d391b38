package devices

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

var update = flag.Bool("update", false, "rewrite golden files")

func parseFile(t *testing.T, name string) (*core.App, []byte) {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	must(t, err)
	app, err := core.Parse(data, name, "/var/lib/qubes", core.Host{MemMiB: 16000, CPUs: 4})
	must(t, err)
	return app, data
}

// devicesSection cuts the <devices> elements of one domain out of a
// marshalled file and removes the indentation of the domain level.
func devicesSection(t *testing.T, xml []byte, vm string) string {
	t.Helper()
	s := string(xml)
	i := strings.Index(s, `<property name="name">`+vm+`</property>`)
	if i < 0 {
		t.Fatalf("no domain %s", vm)
	}
	s = s[i:]
	start := strings.Index(s, "      <devices ")
	end := strings.Index(s, "      <volume-config>")
	var b strings.Builder
	for _, l := range strings.SplitAfter(s[start:end], "\n") {
		b.WriteString(strings.TrimPrefix(l, "      "))
	}
	return b.String()
}

// A file holding the spec's example (spec/devices.md §4.1) loads and saves
// byte for byte, and the example appears verbatim.
func TestSpecExampleRoundTrip(t *testing.T) {
	app, data := parseFile(t, "assignments.xml")
	if out := app.Marshal(); string(out) != string(data) {
		t.Fatal("load + save changed assignments.xml")
	}
	spec, err := os.ReadFile("testdata/spec-example.xml")
	must(t, err)
	if got := devicesSection(t, app.Marshal(), "sys-net"); got != string(spec) {
		t.Fatalf("devices of sys-net:\n%s\nwant the spec's example:\n%s", got, spec)
	}
	d, _ := app.Domain("sys-net")
	pci := Assignments(d, PCI)
	if len(pci) != 1 || pci[0].String() != "dom0:00_14.0" || pci[0].Mode != Required || pci[0].DeviceID != Any {
		t.Errorf("pci assignments %+v", pci)
	}
	if v, _ := pci[0].Option("no-strict-reset"); v != "True" {
		t.Errorf("no-strict-reset = %q", v)
	}
	blk := Assignments(d, Block)
	if len(blk) != 1 || blk[0].String() != "sys-usb:sda:0000:0000::?******:1.0" || blk[0].Mode != AutoAttach {
		t.Errorf("block assignments %+v", blk)
	}
}

// Assigning through this package writes exactly the spec's example.
func TestAssignWritesSpecExample(t *testing.T) {
	app, data := parseFile(t, "assignments.xml")
	d, _ := app.Domain("sys-net")
	UnassignAll(d, PCI)
	UnassignAll(d, Block)
	if strings.Contains(devicesSectionOrEmpty(app.Marshal()), "sys-usb:sda") {
		t.Fatal("not removed")
	}
	must(t, Assign(app, d, &Assignment{
		VirtualDevice: VirtualDevice{Port: Port{Backend: "dom0", ID: "00_14.0", Class: PCI}, DeviceID: Any},
		Mode:          Required, Options: []core.Opt{{Key: "no-strict-reset", Value: "True"}}}))
	must(t, Assign(app, d, &Assignment{
		VirtualDevice: VirtualDevice{Port: Port{Backend: "sys-usb", ID: "sda", Class: Block}, DeviceID: "0000:0000::?******:1.0"},
		Mode:          AutoAttach, Options: []core.Opt{{Key: "read-only", Value: "yes"}}}))
	if out := app.Marshal(); string(out) != string(data) {
		t.Fatal("assignments made through Assign differ from the spec's example")
	}
}

func devicesSectionOrEmpty(b []byte) string { return string(b) }

// Older formats (spec §4.2) load with today's meaning and are saved in
// the current format; legacy PCI ids become PCI paths when sysfs knows them.
func TestLegacyFormats(t *testing.T) {
	app, _ := parseFile(t, "legacy.xml")
	notes := MigratePCIPorts(app, fixtureSys())
	if len(notes) != 1 || notes[0] != "sys-net: PCI device 02_00.2 is now 00_08.1-00_00.2" {
		t.Errorf("notes %q", notes)
	}
	d, _ := app.Domain("sys-net")
	var got []string
	for _, class := range []string{PCI, Block} {
		for _, a := range Assignments(d, class) {
			got = append(got, class+" "+a.Backend+":"+a.ID+" "+a.DeviceID+" "+a.Mode+" "+FormatOptions(a.Options))
		}
	}
	want := []string{
		"pci dom0:00_08.1-00_00.2 * required no-strict-reset=True", // R4.0: mode required
		"pci dom0:02_00.7 * required ",                             // unknown to sysfs: kept
		"pci dom0:00_18.4 * auto-attach ",                          // required= wins over mode
		"block sys-usb:sda 0000:0000::?******:1.0 required read-only=yes",
		"block sys-usb:sdd * ask-to-attach frontend-dev=None", // empty option text
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	out := app.Marshal()
	golden := "testdata/legacy-saved.xml"
	if *update {
		must(t, os.WriteFile(golden, out, 0o644))
	}
	wantXML, err := os.ReadFile(golden)
	must(t, err)
	if string(out) != string(wantXML) {
		t.Fatalf("saved legacy file differs from %s (run with -update and review)", golden)
	}
	if strings.Contains(string(out), "required=") || strings.Contains(string(out), `name="identity"`) {
		t.Fatal("a legacy attribute survived the save")
	}
}

// The refusals of spec §5 and §6.3 for assign, unassign and set mode.
func TestAssignRefusals(t *testing.T) {
	app, _ := parseFile(t, "assignments.xml")
	d, _ := app.Domain("sys-net")
	dom0 := app.Dom0()
	vd := func(class, b, p, id string) VirtualDevice {
		return VirtualDevice{Port: Port{Backend: b, ID: p, Class: class}, DeviceID: id}
	}
	for _, c := range []struct {
		vm   *core.Domain
		a    Assignment
		want string
	}{
		{d, Assignment{VirtualDevice: vd(Block, "dom0", "sdb", Any), Mode: Manual}, "Only auto-attachable devices can be assigned."},
		{d, Assignment{VirtualDevice: vd(PCI, "dom0", "00_1f.0", Any), Mode: AutoAttach}, "PCI devices cannot be assigned as not required."},
		{dom0, Assignment{VirtualDevice: vd(PCI, "dom0", "00_1f.0", Any), Mode: Required}, "Can't attach PCI device to dom0"},
		{d, Assignment{VirtualDevice: vd(PCI, "dom0", "00_14.0", Any), Mode: Required}, "device dom0:00_14.0 of class pci already assigned to sys-net"},
		{d, Assignment{VirtualDevice: vd(Block, "nope", "sdb", Any), Mode: Required}, "no such backend vm!"},
		{d, Assignment{VirtualDevice: vd(Block, "dom0", Any, Any), Mode: Required}, "Cannot assign a device with both port and device id '*'"},
		{d, Assignment{VirtualDevice: vd(USB, "dom0", "1-1", Any), Mode: Required}, "Only pci and block devices can be assigned as required."},
	} {
		a := c.a
		if err := Assign(app, c.vm, &a); err == nil || err.Error() != c.want {
			t.Errorf("Assign %v %s: %v, want %q", a.VirtualDevice, a.Mode, err, c.want)
		}
	}
	if err := Unassign(d, vd(PCI, "dom0", "00_14.0", "0x8086:0x8cb1::p0c0330")); err == nil ||
		err.Error() != "device dom0:00_14.0:0x8086:0x8cb1::p0c0330 of class pci not assigned to sys-net" {
		t.Errorf("unassign of another device id: %v", err)
	}
	blk := vd(Block, "sys-usb", "sda", "0000:0000::?******:1.0")
	if err := SetMode(d, blk, Manual); err == nil || err.Error() != "Cannot change assignment mode to 'manual'" {
		t.Errorf("set manual: %v", err)
	}
	if err := SetMode(d, blk, "sometimes"); err == nil || err.Error() != "Invalid assignment mode" {
		t.Errorf("set bad mode: %v", err)
	}
	must(t, SetMode(d, blk, AskToAttach))
	if a := Assignments(d, Block)[0]; a.Mode != AskToAttach || FormatOptions(a.Options) != "read-only=yes" {
		t.Errorf("after set mode: %+v", a)
	}
	must(t, Unassign(d, blk))
	if d.DeviceClass(Block) != nil {
		t.Error("empty class kept")
	}
}

// Most specific assignment first; matching follows the wildcards.
func TestAssignmentOrderAndMatch(t *testing.T) {
	app, _ := parseFile(t, "assignments.xml")
	d, _ := app.Domain("sys-net")
	UnassignAll(d, Block)
	for _, a := range []struct{ port, id string }{{Any, "dev-x"}, {"sdb", Any}, {"sdb", "dev-x"}} {
		must(t, Assign(app, d, &Assignment{VirtualDevice: VirtualDevice{Port: Port{Backend: "sys-usb", ID: a.port, Class: Block}, DeviceID: a.id}, Mode: AutoAttach}))
	}
	as := Assignments(d, Block)
	if as[0].String() != "sys-usb:sdb:dev-x" || as[1].String() != "sys-usb:sdb" || as[2].String() != "sys-usb:*:dev-x" {
		t.Fatalf("order %v %v %v", as[0], as[1], as[2])
	}
	dev := &Device{Port: Port{Backend: "sys-usb", ID: "sdc", Class: Block}, DeviceID: "dev-x"}
	if as[1].Matches(dev) || !as[2].Matches(dev) || as[0].Matches(dev) {
		t.Error("wildcard matching wrong")
	}
	dev.Backend = "dom0"
	if as[2].Matches(dev) {
		t.Error("matched another backend")
	}
}

func TestParseDeviceArg(t *testing.T) {
	v, err := ParseDeviceArg(PCI, "dom0:00_14.0:0x8086:0x8cb1::p0c0330")
	if err != nil || v.Backend != "dom0" || v.ID != "00_14.0" || v.DeviceID != "0x8086:0x8cb1::p0c0330" {
		t.Errorf("%+v %v", v, err)
	}
	for _, bad := range []string{"dom0", ":sda", "dom0:", "dom0:sda:"} {
		if _, err := ParseDeviceArg(Block, bad); err == nil || !strings.HasPrefix(err.Error(), "expected a backend vm, port id") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestCategory(t *testing.T) {
	for c, want := range map[Interface]string{
		"p0c0330": "PCI_USB", "p0c0500": "PCI_Serial_Bus", "u030101": "Keyboard", "u030000": "Input",
		"p020000": "Network", "b******": "Block_Storage", "u012345": "Audio", "?******": "Other", "p030000": "Display",
		"ue00101": "Bluetooth", "u080650": "USB_Storage",
	} {
		if got := Category(c); got != want {
			t.Errorf("Category(%s) = %s, want %s", c, got, want)
		}
	}
}
