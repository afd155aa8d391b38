package firewall

import (
	"strings"
	"testing"
	"time"
)

// Every field's validation, with the reference server's messages.
func TestFieldValidation(t *testing.T) {
	cases := []struct {
		key, value string
		err        string // "" = accepted
		stored     string // Field() text when accepted ("" = same as value)
	}{
		{"action", "accept", "", ""},
		{"action", "drop", "", ""},
		{"action", "allow", "allow", ""},
		{"action", "Accept", "Accept", ""},
		{"action", "accept!", "strange characters in rule", ""},
		{"proto", "tcp", "", ""},
		{"proto", "udp", "", ""},
		{"proto", "icmp", "", ""},
		{"proto", "sctp", "sctp", ""},
		{"specialtarget", "dns", "", ""},
		{"specialtarget", "ntp", "ntp", ""},
		{"dsthost", "10.0.0.1", "", "10.0.0.1/32"},
		{"dsthost", "192.168.0.0/24", "", ""},
		{"dsthost", "127.0.0.1/8", "", ""}, // host bits are not checked
		{"dsthost", "0.0.0.0/0", "", ""},
		{"dsthost", "2001:db8::1", "", "2001:db8::1/128"},
		{"dsthost", "2001:db8::/32", "", ""},
		{"dsthost", "::/0", "", ""},
		{"dsthost", "www.qubes-os.org", "", ""},
		{"dsthost", "under_score-1.example", "", ""},
		{"dsthost", "1.2.3", "", ""}, // not an address: a valid host name
		{"dsthost", "Example.com", "Invalid hostname", ""},
		{"dsthost", "1.2.3.4/5/6", "Too many /: 1.2.3.4/5/6", ""},
		{"dsthost", "1.2.3.4/x", "bad prefix length", ""},
		{"dsthost", "1.2.3.4/", "bad prefix length", ""},
		{"dsthost", "1.2.3.4/33", "netmask for IPv4 must be <= 32", ""},
		{"dsthost", "::1/129", "netmask for IPv6 must be <= 128", ""},
		{"dsthost", "::1/99999999999999999999", "netmask for IPv6 must be <= 128", ""},
		{"dsthost", "127/8", "Invalid IP address: 127", ""},
		{"dsthost", "1.2.3/8", "Invalid IP address: 1.2.3", ""},
		{"dsthost", "example.com/8", "Invalid IP address: example.com", ""},
		{"dsthost", "a b", "strange characters in rule", ""},
		{"dsthost", "", "Invalid hostname", ""},
		{"dst4", "10.0.0.1", "", "10.0.0.1/32"},
		{"dstports", "443", "", ""},
		{"dstports", "0", "", ""},
		{"dstports", "1000-2000", "", ""},
		{"dstports", "65535", "", ""},
		{"dstports", "65536", "Ports out of range", ""},
		{"dstports", "99999999999999999999", "Ports out of range", ""},
		{"dstports", "90-80", "Invalid port range", ""},
		{"dstports", "80-90-100", "Invalid port range: 80-90-100", ""},
		{"dstports", "abcdef", "Invalid port number: abcdef", ""},
		{"dstports", "80 90", "strange characters in rule", ""},
		{"dstports", "", "Invalid port number: ", ""},
		{"icmptype", "8", "", ""},
		{"icmptype", "255", "", ""},
		{"icmptype", "256", "ICMP type out of range", ""},
		{"icmptype", "1000", "bad ICMP type", ""},
		{"icmptype", "x", "bad ICMP type", ""},
		{"icmptype", "", "bad ICMP type", ""},
		{"expire", "4102444800", "", ""},
		{"expire", "+60", "strange characters in rule", ""},
		{"expire", "soon", "bad expiration time", ""},
		{"expire", "99999999999999999999", "bad expiration time", ""},
		{"comment", "Some comment, here: [ok]; a/b_c-d.e", "", ""},
		{"comment", "no!", "strange characters comment", ""},
		{"comment", "naïve", "strange characters comment", ""},
		{"colour", "red", "Unknown firewall option", ""},
	}
	for _, c := range cases {
		r := Rule{Proto: "tcp"}
		if c.key == "icmptype" {
			r.Proto = "icmp"
		}
		err := r.Set(c.key, c.value)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s=%q refused: %v", c.key, c.value, err)
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("%s=%q: error %v, want %q", c.key, c.value, err, c.err)
		case err == nil:
			key := c.key
			if key == "dst4" {
				key = "dsthost"
			}
			want := c.stored
			if want == "" {
				want = c.value
			}
			if got, _ := r.Field(key); got != want {
				t.Errorf("%s=%q stored as %q, want %q", c.key, c.value, got, want)
			}
		}
	}
}

func TestCrossField(t *testing.T) {
	cases := []struct{ in, err string }{
		{"proto=tcp", "Required property 'action' not set"},
		{"action=accept dstports=80", "dstports valid only for 'tcp' and 'udp' protocols"},
		{"action=accept proto=icmp dstports=80", "dstports valid only for 'tcp' and 'udp' protocols"},
		{"action=accept icmptype=8", "icmptype valid only for 'icmp' protocol"},
		{"action=accept proto=udp icmptype=8", "icmptype valid only for 'icmp' protocol"},
		{"action=accept dstports=80 proto=udp", ""}, // order does not matter
		{"action=accept  proto=tcp", "invalid rule element: ''"},
		{"action=accept proto=tcp proto=udp", "Option 'proto' already set"},
		{"action=accept dst4=1.2.3.4 dsthost=a.b", "Option 'dsthost' already set"},
		{"action=accept frob=1", "Unknown firewall option"},
		{"action=accept comment=é", "Rules contains non-ASCII characters"},
	}
	for _, c := range cases {
		_, err := ParseAPIString(c.in)
		if (c.err == "") != (err == nil) || (err != nil && err.Error() != c.err) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		}
	}
	// Setting proto later clears what no longer applies.
	r, _ := ParseAPIString("action=accept proto=tcp dstports=80")
	_ = r.Set("proto", "icmp")
	if r.HasPorts || r.Validate() != nil {
		t.Errorf("dstports kept after proto=icmp: %+v", r)
	}
}

// The string-form vectors of spec §3.
func TestStringForms(t *testing.T) {
	cases := []struct{ in, api, qdb, client string }{
		{"action=accept dst4=192.168.0.0/24 proto=tcp dstports=443",
			"action=accept dst4=192.168.0.0/24 proto=tcp dstports=443-443",
			"action=accept dst4=192.168.0.0/24 proto=tcp dstports=443-443",
			"action=accept proto=tcp dst4=192.168.0.0/24 dstports=443-443"},
		{"action=accept dsthost=www.qubes-os.org proto=udp dstports=1000-2000 expire=4102444800 comment=Some comment, here",
			"action=accept expire=4102444800 dsthost=www.qubes-os.org proto=udp dstports=1000-2000 comment=Some comment, here",
			"action=accept dsthost=www.qubes-os.org proto=udp dstports=1000-2000",
			"action=accept proto=udp dsthost=www.qubes-os.org dstports=1000-2000 expire=4102444800 comment=Some comment, here"},
		{"action=drop proto=tcp dstports=80-80", "action=drop proto=tcp dstports=80-80", "action=drop proto=tcp dstports=80-80", "action=drop proto=tcp dstports=80-80"},
		{"action=accept expire=2063292452 proto=tcp comment=Some comment, with spaces",
			"action=accept expire=2063292452 proto=tcp comment=Some comment, with spaces",
			"action=accept proto=tcp",
			"action=accept proto=tcp expire=2063292452 comment=Some comment, with spaces"},
		{"action=accept dst4=0.0.0.0/0", "action=accept dst4=0.0.0.0/0", "action=accept dst4=0.0.0.0/0", "action=accept"},
		{"action=drop dst6=::/0 proto=icmp icmptype=8 specialtarget=dns",
			"action=drop dst6=::/0 proto=icmp specialtarget=dns icmptype=8",
			"action=drop dst6=::/0 proto=icmp specialtarget=dns icmptype=8",
			"action=drop proto=icmp icmptype=8 specialtarget=dns"},
	}
	for _, c := range cases {
		r, err := ParseAPIString(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got := r.APIString(); got != c.api {
			t.Errorf("API form of %q:\n got %q\nwant %q", c.in, got, c.api)
		}
		if got := r.QubesDBString(); got != c.qdb {
			t.Errorf("QubesDB form of %q:\n got %q\nwant %q", c.in, got, c.qdb)
		}
		if got := r.String(); got != c.client {
			t.Errorf("client form of %q:\n got %q\nwant %q", c.in, got, c.client)
		}
		// The API form reads back to the same rule.
		if back, err := ParseAPIString(r.APIString()); err != nil || back != r {
			t.Errorf("API round trip of %q: %+v %v", c.in, back, err)
		}
	}
}

// qvm-firewall's rule grammar (cli.md §16 vectors).
func TestParseArgs(t *testing.T) {
	at := time.Unix(1700000000, 0)
	cases := []struct {
		args string
		want string // client form, or the error
	}{
		{"dsthost=127.0.0.1 action=accept", "action=accept dst4=127.0.0.1/32"},
		{"accept 127.0.0.1 tcp 80", "action=accept proto=tcp dst4=127.0.0.1/32 dstports=80-80"},
		{"accept 127.0.0.1 icmp 8", "action=accept proto=icmp dst4=127.0.0.1/32 icmptype=8"},
		{"accept 192.168.0.0/24 comment=Allow_LAN", "action=accept dst4=192.168.0.0/24 comment=Allow_LAN"},
		{"drop proto=icmp", "action=drop proto=icmp"},
		{"proto=tcp accept", "action=accept proto=tcp"},
		{"accept 0.0.0.0/0 udp 53", "action=accept proto=udp dstports=53-53"},
		{"accept dst6=::1 specialtarget=dns", "action=accept dst6=::1/128 specialtarget=dns"},
		{"accept expire=+100", "action=accept expire=1700000100"},
		{"accept expire=1700000000", "action=accept expire=1700000000"},
		{"dsthost=", "invalid rule description: dsthost="},
		{"dstports=", "invalid rule description: dstports="},
		{"icmptype=", "invalid rule description: icmptype="},
		{"accept comment=a=b", "invalid rule description: comment=a=b"},
		{"accept frob=1", "Invalid rule element: frob=1"},
		{"proto=tcp", "missing action="},
		{"accept a.b tcp 80 extra", "invalid rule description: extra"},
		{"accept 127.0.0.1 tcp 99999", "Ports out of range"},
		{"accept 127.0.0.1 udp 8 icmptype=8", "icmptype valid only for 'icmp' protocol"},
		{"accept expire=+x", "bad expiration time"},
		{"allow", "allow"},
		{"accept proto=tcp proto=udp", "Option 'proto' already set: proto=udp"},
		{"accept comment=Allow!", "strange characters comment"},
	}
	for _, c := range cases {
		r, err := ParseArgs(strings.Fields(c.args), at)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = r.String()
		}
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.args, got, c.want)
		}
	}
	if _, err := ParseArgs([]string{"proto=tcp"}, at); err == nil {
		t.Fatal("no error")
	} else if _, ok := err.(*ArgsError); !ok {
		t.Errorf("missing action is not a usage error: %T", err)
	}
	r, err := ParseArgs([]string{"accept", "comment=Allow LAN"}, at)
	if err != nil || r.Comment != "Allow LAN" {
		t.Errorf("comment with a space: %+v %v", r, err)
	}
}
