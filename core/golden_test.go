package core

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func testHost() Host { return Host{MemMiB: 16000, CPUs: 4} }

func loadFile(t *testing.T, name string) *App {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse(data, name, "/var/lib/qubes", testHost())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Load then save of the fixed fixture gives the normalised file of
// spec/state.md §2.7, and a second save changes nothing.
func TestGoldenNormalisation(t *testing.T) {
	a := loadFile(t, "v4-qubes-fixed.xml")
	out := a.Marshal()
	golden := filepath.Join("testdata", "v4-qubes-normalised.xml")
	if *update {
		if err := os.WriteFile(golden, out, 0644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(want) {
		t.Fatalf("normalised output differs from %s (run with -update and review)", golden)
	}
	again, err := Parse(out, "again", "/var/lib/qubes", testHost())
	if err != nil {
		t.Fatal(err)
	}
	if string(again.Marshal()) != string(out) {
		t.Fatal("second save changed the file")
	}
}

// The unfixed fixture is refused, naming the element and its line.
func TestDuplicateQIDRefused(t *testing.T) {
	data, _ := os.ReadFile("testdata/v4-qubes.xml")
	_, err := Parse(data, "qubes.xml", "/var/lib/qubes", testHost())
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err %v", err)
	}
	want := `qubes.xml:196: <domain id="domain-10" class="AppVM"> at line 196: duplicate qid 10 (also used by fedora-25-clone-dvm at line 171)`
	if err.Error() != want {
		t.Fatalf("got  %s\nwant %s", err, want)
	}
}

// Broken files are refused with a message naming the element.
func TestBrokenFiles(t *testing.T) {
	fixed, _ := os.ReadFile("testdata/v4-qubes-fixed.xml")
	cases := []struct{ name, from, to, want string }{
		{"bad xml", "</labels>", "</label>", "malformed XML"},
		{"unknown class", `class="StandaloneVM"`, `class="FooVM"`, "no such VM class: 'FooVM'"},
		{"dangling template", `<property name="template">debian-8</property>`, `<property name="template">nope</property>`, "refers to qube 'nope', which does not exist"},
		{"unknown property", `<property name="debug">True</property>`, `<property name="frobnicate">True</property>`, "property 'frobnicate' not applicable to 'AppVM'"},
		{"bad bool", `<property name="debug">True</property>`, `<property name="debug">maybe</property>`, "Invalid literal for boolean property: 'maybe'"},
		{"bad int", `<property name="memory">500</property>`, `<property name="memory">99999999999999999999999</property>`, "value 99999999999999999999999 is out of range"},
		{"unknown pool", `pool="lvm" revisions_to_keep="1" rw="True" save_on_stop="True" size="2147483648" vid="core3/untrusted-private"`, `pool="nopool" revisions_to_keep="1" rw="True" save_on_stop="True" size="2147483648" vid="core3/untrusted-private"`, "in pool 'nopool', which does not exist"},
		{"r3 file", "<qubes>", "<QubesVmCollection>", "R3 qubes.xml"},
	}
	for _, c := range cases {
		data := strings.Replace(string(fixed), c.from, c.to, 1)
		if c.name == "r3 file" {
			data = strings.Replace(data, "</qubes>", "</QubesVmCollection>", 1)
		}
		if data == string(fixed) {
			t.Fatalf("%s: replacement did not apply", c.name)
		}
		_, err := Parse([]byte(data), "qubes.xml", "/var/lib/qubes", testHost())
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "qubes.xml:") {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

// A netvm that does not provide network is accepted on load (the reference
// checks that only when a user sets it), and kept as it is.
func TestLoadKeepsNetvmWithoutProvidesNetwork(t *testing.T) {
	fixed, _ := os.ReadFile("testdata/v4-qubes-fixed.xml")
	doc := strings.Replace(string(fixed), `<property name="netvm">sys-firewall</property>
        <property name="template">fedora-25</property>`, `<property name="netvm">untrusted</property>
        <property name="template">fedora-25</property>`, 1)
	if doc == string(fixed) {
		t.Fatal("replacement did not apply")
	}
	a, err := Parse([]byte(doc), "q", "/var/lib/qubes", testHost())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := a.Domain("personal")
	if v, _ := a.Get(p, "netvm"); v.S != "untrusted" {
		t.Fatalf("netvm %v", v)
	}
	if err := a.Set(p, "netvm", "untrusted"); err == nil || err.Error() != "The untrusted qube does not provide network" {
		t.Fatalf("a user set is still checked: %v", err)
	}
}

// FuzzParse: any input is refused cleanly or loads into a state whose
// saved form loads again to the same bytes.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/v4-qubes-fixed.xml", "testdata/v4-qubes-normalised.xml", "testdata/v4-qubes.xml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`<qubes><domains><domain class="AppVM"><properties><property name="name">x</property></properties></domain></domains></qubes>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(data, "fuzz", "/var/lib/qubes", testHost())
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error of another type: %T %v", err, err)
			}
			return
		}
		out := a.Marshal()
		b, err := Parse(out, "again", "/var/lib/qubes", testHost())
		if err != nil {
			t.Fatalf("own output refused: %v\n%s", err, out)
		}
		if string(b.Marshal()) != string(out) {
			t.Fatalf("save is not stable")
		}
	})
}
