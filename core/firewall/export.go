package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Client is a qube whose traffic a netvm filters, with what the export
// needs to know about it.
type Client struct {
	Name string
	IP   string // "" when none
	IP6  string // "" unless IPv6 is on along the netvm chain
	// VisibleIP, VisibleIP6, VisibleGateway: the addresses the qube itself
	// sees (they differ from IP with the net.fake-ip feature).
	VisibleIP, VisibleIP6, VisibleGateway string
	DNS                                   []string // its DNS servers (specialtarget=dns)
	Rules                                 []Rule   // as stored, expired ones included
}

// Op is one QubesDB operation in the netvm: a write, or the removal of a
// subtree (Remove, Key ends with "/").
type Op struct {
	Remove bool   `json:"remove,omitempty"`
	Key    string `json:"key"`
	Value  string `json:"value"`
}

// QubesDB is what qubesd writes into the netvm's QubesDB for one client:
// per address (IPv4, then IPv6 when the client has one) the subtree is
// cleared, policy and the rules of that family are written under their
// 4-digit index in the rule list (skipped rules leave gaps), and the bare
// key is written last to mark the update complete.
func QubesDB(c Client, now time.Time) []Op {
	var ops []Op
	for _, fam := range []struct {
		ip   string
		skip DstKind
	}{{c.IP, Dst6}, {c.IP6, Dst4}} {
		if fam.ip == "" {
			continue
		}
		base := "/qubes-firewall/" + fam.ip
		ops = append(ops, Op{Remove: true, Key: base + "/"}, Op{Key: base + "/policy", Value: "drop"})
		for i, r := range c.Rules {
			if r.Expired(now) || r.DstKind == fam.skip {
				continue
			}
			ops = append(ops, Op{Key: fmt.Sprintf("%s/%04d", base, i), Value: r.QubesDBString()})
		}
		ops = append(ops, Op{Key: base, Value: ""})
	}
	return ops
}

// NetvmKeys are the netvm's own keys about its clients: the addresses it
// accepts from them (anti-spoofing) and the fake-IP mappings.
func NetvmKeys(clients []Client) []Op {
	var ips, ips6 []string
	var ops []Op
	for _, c := range clients {
		if c.VisibleIP != "" {
			ips = append(ips, c.VisibleIP)
		}
		if c.VisibleIP6 != "" {
			ips6 = append(ips6, c.VisibleIP6)
		}
	}
	ops = append(ops, Op{Key: "/connected-ips", Value: strings.Join(ips, " ")},
		Op{Key: "/connected-ips6", Value: strings.Join(ips6, " ")})
	for _, c := range clients {
		if c.IP == "" {
			continue
		}
		base := "/mapped-ip/" + c.IP
		if c.VisibleIP != "" && c.VisibleIP != c.IP {
			ops = append(ops, Op{Key: base + "/visible-ip", Value: c.VisibleIP},
				Op{Key: base + "/visible-gateway", Value: c.VisibleGateway})
		} else {
			ops = append(ops, Op{Remove: true, Key: base + "/"})
		}
	}
	return ops
}

// Resolver looks host names up; *net.Resolver is one. network is "ip4" or
// "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ResolveError is a host name in a rule that did not resolve: the ruleset
// is not written, since leaving the rule out would change what it allows.
type ResolveError struct {
	Host, Qube string
	Rule       int
	Err        error
}

func (e *ResolveError) Error() string {
	return fmt.Sprintf("cannot resolve '%s' (rule %d of %s): %v", e.Host, e.Rule, e.Qube, e.Err)
}

func (e *ResolveError) Unwrap() error { return e.Err }

// TableName is the nftables table the export defines (family inet).
const TableName = "qvm-firewall"

// NFT writes an nftables ruleset (for `nft -f`) that applies the clients'
// rules in their netvm: a forward-hook chain sends each client's traffic,
// by source address, to a chain per client and address family holding the
// rules the QubesDB export gives that family, in order, ending in drop.
// Host names are resolved now through res; one that does not resolve at
// all is an error. Loading it replaces the previous export's table.
func NFT(ctx context.Context, netvm string, clients []Client, res Resolver, now time.Time) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/usr/sbin/nft -f\n# Firewall of the qubes connected to %s, written by qvm firewall export at %s.\n", netvm, now.UTC().Format(time.RFC3339))
	b.WriteString("# Each qube's rules apply in order, the first match decides, no match drops.\n# Host names were resolved when this file was written.\n")
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", TableName, TableName, TableName)
	b.WriteString("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	type chain struct {
		name string
		fam  int
		c    *Client
	}
	var chains []chain
	for i := range clients {
		c := &clients[i]
		if c.IP != "" {
			a, err := netip.ParseAddr(c.IP)
			if err != nil || !a.Is4() {
				return "", fmt.Errorf("qube %s: bad IPv4 address %q", c.Name, c.IP)
			}
			ch := chain{"qube-" + c.Name + "-ip4", 4, c}
			fmt.Fprintf(&b, "\t\tip saddr %s jump %s\n", a, ch.name)
			chains = append(chains, ch)
		}
		if c.IP6 != "" {
			a, err := netip.ParseAddr(c.IP6)
			if err != nil || !a.Is6() {
				return "", fmt.Errorf("qube %s: bad IPv6 address %q", c.Name, c.IP6)
			}
			ch := chain{"qube-" + c.Name + "-ip6", 6, c}
			fmt.Fprintf(&b, "\t\tip6 saddr %s jump %s\n", a, ch.name)
			chains = append(chains, ch)
		}
	}
	b.WriteString("\t}\n")
	cache := map[string][2][]netip.Addr{}
	lookup := func(c *Client, i int, host string) ([2][]netip.Addr, error) {
		if v, ok := cache[host]; ok {
			return v, nil
		}
		var v [2][]netip.Addr
		var errs []error
		for k, nw := range []string{"ip4", "ip6"} {
			addrs, err := res.LookupNetIP(ctx, nw, host)
			if err != nil {
				errs = append(errs, err)
			}
			for _, a := range addrs {
				a = a.Unmap()
				if (k == 0) == a.Is4() && !slices.Contains(v[k], a) {
					v[k] = append(v[k], a)
				}
			}
			slices.SortFunc(v[k], func(x, y netip.Addr) int { return x.Compare(y) })
		}
		if len(v[0])+len(v[1]) == 0 {
			err := fmt.Errorf("no address")
			if len(errs) > 0 {
				err = errs[0]
			}
			return v, &ResolveError{Host: host, Qube: c.Name, Rule: i, Err: err}
		}
		cache[host] = v
		return v, nil
	}
	for _, ch := range chains {
		fmt.Fprintf(&b, "\tchain %s {\n", ch.name)
		for i, r := range ch.c.Rules {
			line, note, err := nftRule(r, ch.fam, ch.c, func(h string) ([2][]netip.Addr, error) { return lookup(ch.c, i, h) }, now)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "\t\t# %04d %s", i, r.QubesDBString())
			if note != "" {
				b.WriteString(" (" + note + ")")
			}
			b.WriteByte('\n')
			if line != "" {
				b.WriteString("\t\t" + line + "\n")
			}
		}
		b.WriteString("\t\tdrop\n\t}\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// nftRule translates one rule for one family; an empty line with a note
// means the rule cannot match in that family and is left out.
func nftRule(r Rule, fam int, c *Client, lookup func(string) ([2][]netip.Addr, error), now time.Time) (line, note string, err error) {
	if r.Expired(now) {
		return "", "expired", nil
	}
	ipk, famName := "ip", "IPv4"
	if fam == 6 {
		ipk, famName = "ip6", "IPv6"
	}
	var m []string
	switch r.DstKind {
	case Dst4, Dst6:
		if (r.DstKind == Dst4) != (fam == 4) {
			return "", "other address family", nil
		}
		p, err := netip.ParsePrefix(r.DstHost)
		if err != nil {
			return "", "", fmt.Errorf("qube %s: destination %s: %w", c.Name, r.DstHost, err)
		}
		if p.Bits() > 0 {
			m = append(m, ipk+" daddr "+p.Masked().String())
		}
	case DstName:
		addrs, err := lookup(r.DstHost)
		if err != nil {
			return "", "", err
		}
		set := addrs[0]
		if fam == 6 {
			set = addrs[1]
		}
		if len(set) == 0 {
			return "", r.DstHost + " has no " + famName + " address", nil
		}
		m = append(m, ipk+" daddr "+addrSet(set))
	}
	if r.SpecialTarget == "dns" {
		var set []netip.Addr
		for _, s := range c.DNS {
			if a, err := netip.ParseAddr(s); err == nil && (a.Is4() == (fam == 4)) {
				set = append(set, a)
			}
		}
		if len(set) == 0 {
			return "", "no " + famName + " DNS server", nil
		}
		m = append(m, ipk+" daddr "+addrSet(set))
	}
	switch {
	case r.HasPorts:
		ports := fmt.Sprint(r.PortLo)
		if r.PortHi != r.PortLo {
			ports = r.portRange()
		}
		m = append(m, r.Proto+" dport "+ports)
	case r.HasICMP:
		// "icmp type N" matches the protocol itself.
	case r.Proto == "icmp" && fam == 6:
		m = append(m, "meta l4proto ipv6-icmp")
	case r.Proto != "":
		m = append(m, "meta l4proto "+r.Proto)
	}
	if r.HasICMP {
		kw := "icmp"
		if fam == 6 {
			kw = "icmpv6"
		}
		m = append(m, fmt.Sprintf("%s type %d", kw, r.ICMPType))
	}
	m = append(m, r.Action)
	return strings.Join(m, " "), "", nil
}

func addrSet(as []netip.Addr) string {
	if len(as) == 1 {
		return as[0].String()
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return "{ " + strings.Join(s, ", ") + " }"
}
