package devices

import (
	"os"
	"path/filepath"
	"testing"
)

func fixtureSys() SysFS { return SysFS{Root: "testdata/sysfs/sys"} }

// The conversion vectors of spec/devices.md §6.1 against the fixture tree.
func TestSBDFToPath(t *testing.T) {
	s := fixtureSys()
	for in, want := range map[string]string{
		"0000:c6:00.0":     "c0_03.5-00_00.0-00_00.0",
		"0000:c5:00.0":     "c0_03.5-00_00.0",
		"0000:c0:03.5":     "c0_03.5",
		"0000:00:18.4":     "00_18.4",
		"00:18.4":          "00_18.4",
		"pci_0000_00_18_4": "00_18.4",
		"0000:02:00.2":     "00_08.1-00_00.2",
		"02_00.2":          "00_08.1-00_00.2",
	} {
		got, ok, err := s.SBDFToPath(in)
		if err != nil || !ok || got != want {
			t.Errorf("SBDFToPath(%q) = %q, %v, %v; want %q", in, got, ok, err, want)
		}
	}
	if got, ok, err := s.SBDFToPath("0000:03:00.0"); ok || err != nil {
		t.Errorf("absent device: got %q, %v, %v", got, ok, err)
	}
	if _, _, err := s.SBDFToPath("0000:C6:00.0"); err == nil || err.Error() != `Invalid device identifier: "0000:C6:00.0"` {
		t.Errorf("uppercase accepted or wrong message: %v", err)
	}
}

func TestPathToSBDF(t *testing.T) {
	s := fixtureSys()
	for in, want := range map[string]string{
		"0000_c0_03.5-00_00.0-00_00.0": "0000:c6:00.0",
		"c0_03.5-00_00.0-00_00.0":      "0000:c6:00.0",
		"00_08.1-00_00.2":              "0000:02:00.2",
		"00_18.4":                      "0000:00:18.4",
	} {
		got, ok := s.PathToSBDF(in)
		if !ok || got.String() != want {
			t.Errorf("PathToSBDF(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	if got, ok := s.PathToSBDF("0000_c0_03.7-00_00.0-00_00.0"); ok {
		t.Errorf("missing bridge resolved to %v", got)
	}
}

func TestIsPCIPath(t *testing.T) {
	s := fixtureSys()
	for _, p := range []string{"0000_00_18.4", "00_18.4", "0000_c0_00.0", "00_08.1-00_00.2"} {
		if !s.IsPCIPath(p) {
			t.Errorf("IsPCIPath(%q) = false", p)
		}
	}
	for _, p := range []string{"0000_c6_00.0", "02_00.2", "*", "00:18.4"} {
		if s.IsPCIPath(p) {
			t.Errorf("IsPCIPath(%q) = true", p)
		}
	}
}

// A secondary bus number that does not fit the device's bus (a broken or
// hostile tree) gives no path rather than a garbled one.
func TestSBDFToPathBadBridge(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "devices/pci0000:00/0000:00:01.0/0000:02:00.0"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "devices/pci0000:00/0000:00:01.0/secondary_bus_number"), []byte("9\n"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "bus/pci/devices"), 0o755))
	must(t, os.Symlink("../../../devices/pci0000:00/0000:00:01.0", filepath.Join(root, "bus/pci/devices/0000:00:01.0")))
	must(t, os.Symlink("../../../devices/pci0000:00/0000:00:01.0/0000:02:00.0", filepath.Join(root, "bus/pci/devices/0000:02:00.0")))
	s := SysFS{Root: root}
	if p, ok, err := s.SBDFToPath("0000:02:00.0"); ok || err != nil {
		t.Errorf("got %q %v %v", p, ok, err)
	}
	must(t, os.WriteFile(filepath.Join(root, "devices/pci0000:00/0000:00:01.0/secondary_bus_number"), []byte("250\n"), 0o644))
	if a, ok := s.PathToSBDF("00_01.0-10_00.0"); ok {
		t.Errorf("bus past 0xff: %v", a)
	}
}
