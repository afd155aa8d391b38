package firewall

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

var now = time.Unix(2000000000, 0)

func strs(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.String())
	}
	return out
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The version 2 fixture loads to its six rules and saves to the same bytes.
func TestFixtureV2RoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/v4-firewall.xml")
	if err != nil {
		t.Fatal(err)
	}
	rules, v, err := Parse(data)
	if err != nil || v != 2 {
		t.Fatalf("Parse: version %d, %v", v, err)
	}
	eq(t, "rules", strs(rules), []string{
		"action=accept specialtarget=dns",
		"action=accept proto=icmp",
		"action=accept proto=tcp dstports=22-22",
		"action=accept proto=tcp dsthost=www.qubes-os.org dstports=443-443",
		"action=accept proto=tcp dst4=192.168.0.0/24",
		"action=drop",
	})
	if got := Marshal(rules, now); !bytes.Equal(got, data) {
		t.Errorf("save differs from the fixture:\n%s", got)
	}
	// And through the files: Save then read back.
	dir := t.TempDir()
	if err := Save(dir, rules, now); err != nil {
		t.Fatal(err)
	}
	back, _ := os.ReadFile(filepath.Join(dir, "firewall.xml"))
	if !bytes.Equal(back, data) {
		t.Errorf("saved file differs from the fixture")
	}
	st, _ := os.Stat(filepath.Join(dir, "firewall.xml"))
	if st.Mode().Perm() != 0o664 {
		t.Errorf("mode %v, want 0664", st.Mode().Perm())
	}
}

// The spec's §4.1 example: property order and dstports form.
func TestSpecExampleBytes(t *testing.T) {
	r, err := ParseAPIString("action=accept dsthost=www.qubes-os.org proto=udp dstports=1000-2000 expire=4102444800 comment=Some comment, here")
	if err != nil {
		t.Fatal(err)
	}
	want := `<firewall version="2">
  <rules>
    <rule>
      <properties>
        <property name="action">accept</property>
        <property name="comment">Some comment, here</property>
        <property name="expire">4102444800</property>
        <property name="dsthost">www.qubes-os.org</property>
        <property name="proto">udp</property>
        <property name="dstports">1000-2000</property>
      </properties>
    </rule>
  </rules>
</firewall>
`
	if got := string(Marshal([]Rule{r}, now)); got != want {
		t.Errorf("got:\n%s", got)
	}
	if got := string(Marshal(nil, now)); got != "<firewall version=\"2\">\n  <rules/>\n</firewall>\n" {
		t.Errorf("empty list: %q", got)
	}
}

// Version 1 imports to the rules §4.2 lists (the 0.0.0.0 netmask 0 rules
// become 0.0.0.0/32, as the reference does) and saves as version 2.
func TestV1Import(t *testing.T) {
	data, err := os.ReadFile("testdata/v3-firewall.xml")
	if err != nil {
		t.Fatal(err)
	}
	rules, v, err := Parse(data)
	if err != nil || v != 1 {
		t.Fatalf("Parse: version %d, %v", v, err)
	}
	eq(t, "rules", strs(rules), []string{
		"action=accept specialtarget=dns",
		"action=accept proto=icmp",
		"action=accept proto=tcp dst4=0.0.0.0/32 dstports=22-22",
		"action=accept proto=tcp dst4=0.0.0.0/32 dstports=9418-9418",
		"action=accept proto=tcp dst4=192.168.0.1/32 dstports=1234-1234",
		"action=accept proto=tcp dsthost=fedorahosted.org dstports=443-443",
		"action=accept proto=tcp dsthost=xenbits.xen.org dstports=80-80",
	})
	out := Marshal(rules, now)
	golden := "testdata/v3-firewall-converted.xml"
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("converted file differs from %s:\n%s", golden, out)
	}
	// The converted file reads back to the same rules.
	again, v2, err := Parse(out)
	if err != nil || v2 != 2 {
		t.Fatal(err)
	}
	eq(t, "re-read", strs(again), strs(rules))
}

func TestV1Policies(t *testing.T) {
	cases := []struct{ in, want string }{
		{`<QubesFirewallRules policy="allow" dns="deny" icmp="allow"><rule address="10.0.0.0" netmask="8" proto="udp" port="53" toport="60" expire="100"/></QubesFirewallRules>`,
			"action=drop specialtarget=dns|action=accept proto=icmp|action=drop proto=udp dst4=10.0.0.0/8 dstports=53-60 expire=100|action=accept"},
		{`<QubesFirewallRules policy="deny"><rule address="::1"/><rule address="a.b" proto="any"/></QubesFirewallRules>`,
			"action=drop specialtarget=dns|action=drop proto=icmp|action=accept dst6=::1/128|action=accept dsthost=a.b"},
		{`<QubesFirewallRules policy="deny"><rule address="0.0.0.0" netmask="0"/></QubesFirewallRules>`,
			"action=drop specialtarget=dns|action=drop proto=icmp|action=accept dst4=0.0.0.0/32"},
	}
	for _, c := range cases {
		rules, _, err := Parse([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got := strings.Join(strs(rules), "|"); got != c.want {
			t.Errorf("%s:\ngot  %s\nwant %s", c.in, got, c.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{`<firewall version="3"><rules/></firewall>`, "Unsupported firewall.xml version: 3"},
		{`<firewall version="2"><rules><rule><properties><property name="colour">red</property></properties></rule></rules></firewall>`, "unknown property 'colour'"},
		{`<firewall version="2"><rules><rule><properties><property name="action">allow</property></properties></rule></rules></firewall>`, "rule 0 (line 1): allow"},
		{`<firewall version="2"><rules><rule><properties><property name="proto">tcp</property></properties></rule></rules></firewall>`, "Required property 'action' not set"},
		{`<firewall version="2"><rules><rule><properties><property name="action">accept</property><property name="action">drop</property></properties></rule></rules></firewall>`, "given twice"},
		{`<firewall version="2"><rules><rule><properties><property name="action"></property></properties></rule></rules></firewall>`, "is empty"},
		{`<firewall version="2"><rules><rule><properties><property name="action">accept</property><property name="dstports">80</property></properties></rule></rules></firewall>`, "dstports valid only for 'tcp' and 'udp' protocols"},
		{`<qubes version="2"/>`, "not <firewall>"},
		{`<QubesFirewallRules policy="deny"><rule address="a.b" netmask="8"/></QubesFirewallRules>`, "Invalid IP address: a.b"},
		{`<QubesFirewallRules policy="deny"><rule address="1.2.3.4" netmask="x"/></QubesFirewallRules>`, "bad netmask: x"},
		{`<firewall version="2"><rules>`, "line 1"},
		{`<!DOCTYPE x [<!ENTITY a "b">]><firewall/>`, "DTDs"},
	}
	for _, c := range cases {
		_, _, err := Parse([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.in, err, c.want)
		}
	}
}

// No file: the default single accept rule; a broken file is an error that
// names the file; Copy, WriteFile and Remove work on the directories.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	rules, exists, err := Load(dir)
	if err != nil || exists {
		t.Fatalf("Load without a file: %v %v", exists, err)
	}
	eq(t, "default", strs(rules), []string{"action=accept"})

	dst := filepath.Join(t.TempDir(), "appvms", "copy")
	if err := Copy(dir, dst, now); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Path(dst)); !os.IsNotExist(err) {
		t.Errorf("copy of a qube without rules made a file: %v", err)
	}
	v3, _ := os.ReadFile("testdata/v3-firewall.xml")
	if err := WriteFile(dir, v3, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadFile(dir); !bytes.HasPrefix(got, []byte(`<firewall version="2">`)) {
		t.Errorf("restored v1 file not written as version 2: %s", got)
	}
	if err := Copy(dir, dst, now); err != nil {
		t.Fatal(err)
	}
	a, _ := ReadFile(dir)
	b, _ := ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Errorf("copy differs")
	}
	if err := WriteFile(dst, []byte("<firewall version=\"9\"/>"), now); err == nil || !strings.Contains(err.Error(), "firewall.xml: Unsupported") {
		t.Errorf("hostile restore: %v", err)
	}
	if b2, _ := ReadFile(dst); !bytes.Equal(b2, b) {
		t.Errorf("refused restore changed the file")
	}
	os.WriteFile(Path(dst), []byte("<firewall"), 0o644)
	if _, _, err := Load(dst); err == nil || !strings.Contains(err.Error(), Path(dst)) {
		t.Errorf("broken file: %v", err)
	}
	if err := Remove(dst); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dst); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if _, err := ReadFile(dst); !os.IsNotExist(err) {
		t.Errorf("file still there: %v", err)
	}
}

// Expired rules are left out on save and of the active list, but Parse keeps
// them (the QubesDB numbering counts them).
func TestExpiry(t *testing.T) {
	old, _ := ParseAPIString("action=accept expire=1999999999 proto=tcp")
	edge, _ := ParseAPIString("action=accept expire=2000000000 proto=udp")
	future, _ := ParseAPIString("action=drop expire=2000000060")
	rules := []Rule{old, edge, future}
	eq(t, "active", strs(Active(rules, now)), []string{"action=accept proto=udp expire=2000000000", "action=drop expire=2000000060"})
	eq(t, "active later", strs(Active(rules, now.Add(61*time.Second))), nil)
	got, _, err := Parse(Marshal(rules, now))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "saved", strs(got), strs(Active(rules, now)))
	all, _, _ := Parse([]byte(`<firewall version="2"><rules><rule><properties><property name="action">accept</property><property name="expire">1</property></properties></rule></rules></firewall>`))
	if len(all) != 1 {
		t.Errorf("Parse dropped an expired rule")
	}
}
