package firewall

import (
	"os"
	"reflect"
	"testing"
)

// Any firewall.xml either fails to load or saves to a file that loads to
// the same rules (no panic, no drift between writer and reader).
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/v4-firewall.xml", "testdata/v3-firewall.xml", "testdata/v3-firewall-converted.xml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`<firewall version="2"><rules><rule><properties><property name="action">accept</property><property name="dsthost">::ffff:1.2.3.4/96</property></properties></rule></rules></firewall>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, _, err := Parse(data)
		if err != nil {
			return
		}
		out := Marshal(rules, now)
		again, v, err := Parse(out)
		if err != nil || v != 2 {
			t.Fatalf("saved file does not load: %v\n%s", err, out)
		}
		if want := Active(rules, now); !reflect.DeepEqual(again, want) && !(len(again) == 0 && len(want) == 0) {
			t.Fatalf("rules changed on save:\n%v\n%v", want, again)
		}
	})
}

// A rule string that parses prints to an API form that parses back to it.
func FuzzParseAPIString(f *testing.F) {
	for _, s := range []string{
		"action=accept dst4=192.168.0.0/24 proto=tcp dstports=443",
		"action=accept dsthost=www.qubes-os.org proto=udp dstports=1000-2000 expire=4102444800 comment=Some comment, here",
		"action=drop dst6=::/0 proto=icmp icmptype=8 specialtarget=dns",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseAPIString(s)
		if err != nil {
			return
		}
		back, err := ParseAPIString(r.APIString())
		if err != nil || back != r {
			t.Fatalf("%q -> %q -> %+v, %v", s, r.APIString(), back, err)
		}
		if _, err := ParseAPIString(r.QubesDBString()); err != nil {
			t.Fatalf("QubesDB form %q does not parse: %v", r.QubesDBString(), err)
		}
	})
}
