package firewall

import (
	"strconv"
	"strings"
	"time"
)

// ArgsError is a rule description qvm-firewall's grammar refuses (a usage
// error); field values it accepts are then checked as the server does.
type ArgsError struct{ Msg string }

func (e *ArgsError) Error() string { return e.Msg }

// ParseArgs reads a rule given as qvm-firewall arguments: key=value tokens
// and bare values, which fill action, dsthost, proto and then dstports (after
// tcp/udp) or icmptype (after icmp). expire=+N is N seconds from now; a
// destination with prefix 0 means "any" and is left out, as the stock client
// does.
func ParseArgs(args []string, now time.Time) (Rule, error) {
	order := []string{"action", "dsthost", "proto", "dstports", "icmptype"}
	var fs []Field
	seen := map[string]bool{}
	for _, tok := range args {
		var key, value string
		switch strings.Count(tok, "=") {
		case 0:
			if len(order) == 0 {
				return Rule{}, &ArgsError{"invalid rule description: " + tok}
			}
			key, value = order[0], tok
		case 1:
			key, value, _ = strings.Cut(tok, "=")
			if value == "" {
				return Rule{}, &ArgsError{"invalid rule description: " + tok}
			}
		default:
			return Rule{}, &ArgsError{"invalid rule description: " + tok}
		}
		if key == "dst4" || key == "dst6" {
			key = "dsthost"
		}
		if !isKey(key) {
			return Rule{}, &ArgsError{"Invalid rule element: " + tok}
		}
		if seen[key] {
			return Rule{}, &ArgsError{"Option '" + key + "' already set: " + tok}
		}
		seen[key] = true
		if key == "proto" {
			// The slot after the protocol is its port range or ICMP type.
			drop := "dstports"
			if value == "tcp" || value == "udp" {
				drop = "icmptype"
			}
			order = remove(order, drop)
		}
		order = remove(order, key)
		if key == "expire" && strings.HasPrefix(value, "+") {
			n, err := strconv.ParseInt(value[1:], 10, 64)
			if err != nil || n < 0 || !digits(value[1:]) {
				return Rule{}, errorf("bad expiration time")
			}
			value = strconv.FormatInt(now.Unix()+n, 10)
		}
		fs = append(fs, Field{key, value})
	}
	if !seen["action"] {
		return Rule{}, &ArgsError{"missing action="}
	}
	r, err := FromFields(fs)
	if err != nil {
		return r, err
	}
	if r.zeroPrefix() {
		r.DstHost, r.DstKind = "", DstNone
	}
	return r, nil
}

func remove(list []string, s string) []string {
	out := list[:0:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
