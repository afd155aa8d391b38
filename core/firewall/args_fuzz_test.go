package firewall

import (
	"errors"
	"strings"
	"testing"
)

// A rule typed on the qvm firewall command line is refused with an
// ArgsError or Error, or becomes a rule that validates and whose API form
// parses back to the same rule.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"accept 192.168.1.0/24 tcp 22",
		"drop proto=icmp icmptype=8",
		"accept dsthost=www.qubes-os.org proto=udp dstports=1000-2000 expire=+3600 comment=LAN",
		"accept specialtarget=dns",
		"drop 10.0.0.0/0",
		"accept dst6=::1/128 tcp 1-65535",
		"accept proto=tcp proto=udp",
		"accept a=b=c",
		"accept expire=+99999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseArgs(strings.Fields(line), now)
		if err != nil {
			var ae *ArgsError
			var fe *Error
			if !errors.As(err, &ae) && !errors.As(err, &fe) {
				t.Fatalf("%q: error of another kind %T: %v", line, err, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("%q parsed into a rule that does not validate: %v", line, err)
		}
		back, err := ParseAPIString(r.APIString())
		if err != nil || back != r {
			t.Fatalf("%q -> %q -> %+v, %v", line, r.APIString(), back, err)
		}
	})
}
