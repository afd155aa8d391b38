package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Error is a refused rule or field; Msg is what the user sees.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// DstKind says what a destination is; it picks the dst4/dst6/dsthost key.
type DstKind int

// Destination kinds.
const (
	DstNone DstKind = iota
	Dst4
	Dst6
	DstName
)

// Rule is one firewall rule. Zero values mean "field not set"; the Has*
// flags cover fields whose zero is a valid value.
type Rule struct {
	Action        string // accept | drop
	DstHost       string // as stored: address with /prefix, or a host name
	DstKind       DstKind
	Proto         string // tcp | udp | icmp | ""
	HasPorts      bool
	PortLo        int
	PortHi        int
	HasICMP       bool
	ICMPType      int
	SpecialTarget string // dns | ""
	HasExpire     bool
	Expire        int64 // UNIX seconds
	Comment       string
}

// Fields in the order of the firewall.xml writer (sort key, then name).
var xmlOrder = []string{"action", "comment", "expire", "dsthost", "proto", "specialtarget", "dstports", "icmptype"}

// ruleChars is the reference's character filter for every field but the
// comment, which may also hold spaces.
func ruleChars(s string, comment bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(":;,./-_[]", c) >= 0:
		case c == ' ' && comment:
		default:
			return false
		}
	}
	return true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Set validates one field and stores it. Setting proto clears dstports and
// icmptype when they no longer apply, as the reference does.
func (r *Rule) Set(key, value string) error {
	if key == "comment" {
		if !ruleChars(value, true) {
			return errorf("strange characters comment")
		}
		r.Comment = value
		return nil
	}
	if !ruleChars(value, false) {
		return errorf("strange characters in rule")
	}
	switch key {
	case "action":
		if value != "accept" && value != "drop" {
			return errorf("%s", value)
		}
		r.Action = value
	case "proto":
		if value != "tcp" && value != "udp" && value != "icmp" {
			return errorf("%s", value)
		}
		r.Proto = value
		if value != "tcp" && value != "udp" {
			r.HasPorts = false
		}
		if value != "icmp" {
			r.HasICMP = false
		}
	case "specialtarget":
		if value != "dns" {
			return errorf("%s", value)
		}
		r.SpecialTarget = value
	case "dsthost", "dst4", "dst6", "dstname":
		h, k, err := ParseDstHost(value, -1)
		if err != nil {
			return err
		}
		r.DstHost, r.DstKind = h, k
	case "dstports":
		lo, hi, err := parsePorts(value)
		if err != nil {
			return err
		}
		r.HasPorts, r.PortLo, r.PortHi = true, lo, hi
	case "icmptype":
		if len(value) > 3 || !digits(value) {
			return errorf("bad ICMP type")
		}
		n, _ := strconv.Atoi(value)
		if n > 255 {
			return errorf("ICMP type out of range")
		}
		r.HasICMP, r.ICMPType = true, n
	case "expire":
		if !digits(value) {
			return errorf("bad expiration time")
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return errorf("bad expiration time")
		}
		r.HasExpire, r.Expire = true, n
	default:
		return errorf("Unknown firewall option")
	}
	return nil
}

// ParseDstHost validates a destination: an IPv6 or IPv4 address with an
// optional /prefix (bare addresses get /128 or /32), or a host name of
// lowercase letters, digits, '-', '.', '_'. prefix >= 0 is a prefix given
// separately (the version 1 importer); 0 there falls back to the full
// length, as the reference does.
func ParseDstHost(value string, prefix int) (string, DstKind, error) {
	if !ruleChars(value, false) {
		return "", 0, errorf("strange characters in rule")
	}
	if strings.Count(value, "/") > 1 {
		return "", 0, errorf("Too many /: %s", value)
	}
	host, plen, hasPrefix := strings.Cut(value, "/")
	if !hasPrefix {
		if isIPv6(host) {
			if prefix <= 0 {
				prefix = 128
			}
			if prefix > 128 {
				return "", 0, errorf("netmask for IPv6 must be <= 128")
			}
			return fmt.Sprintf("%s/%d", host, prefix), Dst6, nil
		}
		if isIPv4(host) {
			if prefix <= 0 {
				prefix = 32
			}
			if prefix > 32 {
				return "", 0, errorf("netmask for IPv4 must be <= 32")
			}
			return fmt.Sprintf("%s/%d", host, prefix), Dst4, nil
		}
		if prefix >= 0 {
			return "", 0, errorf("Invalid IP address: %s", host)
		}
		if !validHostname(host) {
			return "", 0, errorf("Invalid hostname")
		}
		return host, DstName, nil
	}
	if !digits(plen) {
		return "", 0, errorf("bad prefix length")
	}
	n, err := strconv.Atoi(plen)
	if err != nil {
		n = 1 << 30 // too many digits: out of range below
	}
	switch {
	case isIPv6(host):
		if n > 128 {
			return "", 0, errorf("netmask for IPv6 must be <= 128")
		}
		return fmt.Sprintf("%s/%d", host, n), Dst6, nil
	case isIPv4(host):
		if n > 32 {
			return "", 0, errorf("netmask for IPv4 must be <= 32")
		}
		return fmt.Sprintf("%s/%d", host, n), Dst4, nil
	}
	return "", 0, errorf("Invalid IP address: %s", host)
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6() && a.Zone() == ""
}

// isIPv4 is inet_pton's dotted quad (exactly three dots, no leading zeros).
func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4() && strings.Count(s, ".") == 3
}

func validHostname(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func parsePorts(v string) (int, int, error) {
	if strings.Count(v, "-") > 1 {
		return 0, 0, errorf("Invalid port range: %s", v)
	}
	a, b, isRange := strings.Cut(v, "-")
	if !isRange {
		b = a
	}
	if !digits(a) || !digits(b) {
		return 0, 0, errorf("Invalid port number: %s", v)
	}
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || lo > 65535 || hi > 65535 {
		return 0, 0, errorf("Ports out of range")
	}
	if lo > hi {
		return 0, 0, errorf("Invalid port range")
	}
	return lo, hi, nil
}

// Validate checks what single fields cannot: action is set, dstports and
// icmptype only with the protocols they belong to.
func (r *Rule) Validate() error {
	if r.Action == "" {
		return errorf("Required property 'action' not set")
	}
	if r.HasPorts && r.Proto != "tcp" && r.Proto != "udp" {
		return errorf("dstports valid only for 'tcp' and 'udp' protocols")
	}
	if r.HasICMP && r.Proto != "icmp" {
		return errorf("icmptype valid only for 'icmp' protocol")
	}
	return nil
}

// Expired tells whether the rule's expiry time is in the past.
func (r *Rule) Expired(now time.Time) bool {
	return r.HasExpire && time.Unix(r.Expire, 0).Before(now)
}

// Field returns a field's stored text and whether it is set; dstports is
// "N" when the range is one port (the firewall.xml form).
func (r *Rule) Field(key string) (string, bool) {
	switch key {
	case "action":
		return r.Action, r.Action != ""
	case "comment":
		return r.Comment, r.Comment != ""
	case "expire":
		return strconv.FormatInt(r.Expire, 10), r.HasExpire
	case "dsthost":
		return r.DstHost, r.DstKind != DstNone
	case "proto":
		return r.Proto, r.Proto != ""
	case "specialtarget":
		return r.SpecialTarget, r.SpecialTarget != ""
	case "dstports":
		if r.PortLo == r.PortHi {
			return strconv.Itoa(r.PortLo), r.HasPorts
		}
		return r.portRange(), r.HasPorts
	case "icmptype":
		return strconv.Itoa(r.ICMPType), r.HasICMP
	}
	return "", false
}

func (r *Rule) portRange() string { return fmt.Sprintf("%d-%d", r.PortLo, r.PortHi) }

// dstKey is the destination's key in rule strings.
func (r *Rule) dstKey() string {
	switch r.DstKind {
	case Dst4:
		return "dst4"
	case Dst6:
		return "dst6"
	}
	return "dsthost"
}

// zeroPrefix: 0.0.0.0/0 or ::/0, which the client form leaves out.
func (r *Rule) zeroPrefix() bool {
	return (r.DstKind == Dst4 || r.DstKind == Dst6) && strings.HasSuffix(r.DstHost, "/0")
}

type token struct{ k, v string }

func (r *Rule) tokens(order []string, withZeroDst bool) []token {
	var out []token
	for _, k := range order {
		switch k {
		case "dst":
			if r.DstKind != DstNone && (withZeroDst || !r.zeroPrefix()) {
				out = append(out, token{r.dstKey(), r.DstHost})
			}
		case "dstports":
			if r.HasPorts {
				out = append(out, token{k, r.portRange()})
			}
		default:
			if v, ok := r.Field(k); ok {
				out = append(out, token{k, v})
			}
		}
	}
	return out
}

func join(ts []token) string {
	var b strings.Builder
	for i, t := range ts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.k)
		b.WriteByte('=')
		b.WriteString(t.v)
	}
	return b.String()
}

// QubesDBString is the form written to the netvm's QubesDB (no expire,
// no comment).
func (r *Rule) QubesDBString() string {
	return join(r.tokens([]string{"action", "dst", "proto", "specialtarget", "dstports", "icmptype"}, true))
}

// APIString is the form admin.vm.firewall.Get returns.
func (r *Rule) APIString() string {
	return join(r.tokens([]string{"action", "expire", "dst", "proto", "specialtarget", "dstports", "icmptype", "comment"}, true))
}

// String is the client form qvm-firewall --raw prints and `del RULE`
// compares; a destination with prefix 0 is left out.
func (r *Rule) String() string {
	return join(r.tokens([]string{"action", "proto", "dst", "dstports", "icmptype", "specialtarget", "expire", "comment"}, false))
}

// ParseAPIString reads a rule in the server's key=value form (what
// admin.vm.firewall.Set accepts): comment= runs to the end of the line,
// other tokens are separated by single spaces, keys may not repeat.
func ParseAPIString(s string) (Rule, error) {
	var r Rule
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return r, errorf("Rules contains non-ASCII characters")
		}
	}
	main, comment, hasComment := s, "", false
	if i := strings.Index(s, "comment="); i >= 0 {
		main, comment, hasComment = strings.TrimSuffix(s[:i], " "), s[i+len("comment="):], true
	}
	var fs []Field
	seen := map[string]bool{}
	if main != "" {
		for _, tok := range strings.Split(main, " ") {
			k, v, ok := strings.Cut(tok, "=")
			if !ok {
				return r, errorf("invalid rule element: '%s'", tok)
			}
			if k == "dst4" || k == "dst6" || k == "dstname" {
				k = "dsthost"
			}
			if !isKey(k) {
				return r, errorf("Unknown firewall option")
			}
			if seen[k] {
				return r, errorf("Option '%s' already set", k)
			}
			seen[k] = true
			fs = append(fs, Field{k, v})
		}
	}
	if hasComment {
		fs = append(fs, Field{"comment", comment})
	}
	return FromFields(fs)
}

// Field is one key=value of a rule.
type Field struct{ Key, Value string }

// setOrder: destination and protocol first, so the fields that depend on
// the protocol are checked against it whatever order they came in.
var setOrder = []string{"action", "dsthost", "proto", "specialtarget", "dstports", "icmptype", "expire", "comment"}

// FromFields builds and validates a rule; keys must be known (dsthost, not
// its aliases) and appear once.
func FromFields(fs []Field) (Rule, error) {
	var r Rule
	for _, f := range fs {
		if !isKey(f.Key) {
			return r, errorf("Unknown firewall option")
		}
	}
	for _, k := range setOrder {
		for _, f := range fs {
			if f.Key == k {
				if err := r.Set(k, f.Value); err != nil {
					return r, err
				}
			}
		}
	}
	return r, r.Validate()
}

func isKey(k string) bool {
	switch k {
	case "action", "dsthost", "proto", "dstports", "icmptype", "specialtarget", "expire", "comment":
		return true
	}
	return false
}

// MatchesAll tells whether the rule matches all traffic (no destination,
// protocol or special target): rules after it never apply.
func (r *Rule) MatchesAll() bool {
	return (r.DstKind == DstNone || r.zeroPrefix()) && r.Proto == "" && r.SpecialTarget == ""
}
