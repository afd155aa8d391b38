package firewall

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func opsText(ops []Op) string {
	var b strings.Builder
	for _, o := range ops {
		if o.Remove {
			fmt.Fprintf(&b, "rm %s\n", o.Key)
		} else {
			fmt.Fprintf(&b, "%s=%s\n", o.Key, o.Value)
		}
	}
	return b.String()
}

func mustRules(t *testing.T, lines ...string) []Rule {
	t.Helper()
	var out []Rule
	for _, l := range lines {
		r, err := ParseAPIString(l)
		if err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// The default-rules vector of spec §5 (test_621).
func TestQubesDBDefault(t *testing.T) {
	got := opsText(QubesDB(Client{Name: "test", IP: "10.137.0.3", Rules: DefaultRules()}, now))
	want := "rm /qubes-firewall/10.137.0.3/\n/qubes-firewall/10.137.0.3/policy=drop\n/qubes-firewall/10.137.0.3/0000=action=accept\n/qubes-firewall/10.137.0.3=\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// Skipped rules (other family, expired) keep their index: the gaps of §5.
func TestQubesDBGaps(t *testing.T) {
	rules := mustRules(t,
		"action=accept specialtarget=dns",
		"action=accept proto=icmp",
		"action=accept dst4=192.168.0.0/24 proto=tcp",
		"action=accept dst6=2001:db8::/32",
		"action=drop dsthost=www.example.com proto=udp dstports=53",
		"action=accept expire=1 proto=tcp",
	)
	ops := QubesDB(Client{IP: "10.137.0.3", IP6: "fd09:24ef:4179::a89:3", Rules: rules}, now)
	got := opsText(ops)
	want := `rm /qubes-firewall/10.137.0.3/
/qubes-firewall/10.137.0.3/policy=drop
/qubes-firewall/10.137.0.3/0000=action=accept specialtarget=dns
/qubes-firewall/10.137.0.3/0001=action=accept proto=icmp
/qubes-firewall/10.137.0.3/0002=action=accept dst4=192.168.0.0/24 proto=tcp
/qubes-firewall/10.137.0.3/0004=action=drop dsthost=www.example.com proto=udp dstports=53-53
/qubes-firewall/10.137.0.3=
rm /qubes-firewall/fd09:24ef:4179::a89:3/
/qubes-firewall/fd09:24ef:4179::a89:3/policy=drop
/qubes-firewall/fd09:24ef:4179::a89:3/0000=action=accept specialtarget=dns
/qubes-firewall/fd09:24ef:4179::a89:3/0001=action=accept proto=icmp
/qubes-firewall/fd09:24ef:4179::a89:3/0003=action=accept dst6=2001:db8::/32
/qubes-firewall/fd09:24ef:4179::a89:3/0004=action=drop dsthost=www.example.com proto=udp dstports=53-53
/qubes-firewall/fd09:24ef:4179::a89:3=
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	// No IPv6 address: nothing for IPv6.
	if s := opsText(QubesDB(Client{IP: "10.137.0.3", Rules: rules}, now)); strings.Contains(s, "fd09") {
		t.Errorf("IPv6 keys without an IPv6 address:\n%s", s)
	}
}

func TestNetvmKeys(t *testing.T) {
	got := opsText(NetvmKeys([]Client{
		{IP: "10.137.0.3", VisibleIP: "10.137.0.3", VisibleIP6: "fd09::3"},
		{IP: "10.137.0.4", VisibleIP: "192.168.1.4", VisibleGateway: "192.168.1.1"},
	}))
	want := `/connected-ips=10.137.0.3 192.168.1.4
/connected-ips6=fd09::3
rm /mapped-ip/10.137.0.3/
/mapped-ip/10.137.0.4/visible-ip=192.168.1.4
/mapped-ip/10.137.0.4/visible-gateway=192.168.1.1
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// fakeResolver answers from a table; names not in it do not resolve.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range f[host] {
		if (network == "ip4") == a.Is4() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no such host")
	}
	return out, nil
}

var fixtureHosts = fakeResolver{
	"www.qubes-os.org": {netip.MustParseAddr("147.75.32.69"), netip.MustParseAddr("2604:1380:4601:e00::1")},
	"fedorahosted.org": {netip.MustParseAddr("8.43.85.67")},
	"xenbits.xen.org":  {netip.MustParseAddr("2001:db8::80"), netip.MustParseAddr("50.0.0.1"), netip.MustParseAddr("50.0.0.2")},
}

func fixtureClients(t *testing.T) []Client {
	var clients []Client
	for i, f := range []string{"v4-firewall.xml", "v3-firewall.xml"} {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		rules, _, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		c := Client{Name: strings.TrimSuffix(f, ".xml"), IP: fmt.Sprintf("10.137.0.%d", i+3), DNS: []string{"10.139.1.1", "10.139.1.2"}, Rules: rules}
		if i == 0 {
			c.IP6 = "fd09:24ef:4179::a89:3"
		}
		clients = append(clients, c)
	}
	return clients
}

func TestNFTFixtureRules(t *testing.T) {
	out, err := NFT(context.Background(), "sys-firewall", fixtureClients(t), fixtureHosts, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\t\tip saddr 10.137.0.3 jump qube-v4-firewall-ip4\n",
		"\t\tip6 saddr fd09:24ef:4179::a89:3 jump qube-v4-firewall-ip6\n",
		"\t\tip saddr 10.137.0.4 jump qube-v3-firewall-ip4\n",
		"\t\t# 0000 action=accept specialtarget=dns\n\t\tip daddr { 10.139.1.1, 10.139.1.2 } accept\n",
		"\t\t# 0000 action=accept specialtarget=dns (no IPv6 DNS server)\n",
		"\t\t# 0001 action=accept proto=icmp\n\t\tmeta l4proto icmp accept\n",
		"\t\tmeta l4proto ipv6-icmp accept\n",
		"\t\ttcp dport 22 accept\n",
		"\t\tip daddr 147.75.32.69 tcp dport 443 accept\n",
		"\t\tip6 daddr 2604:1380:4601:e00::1 tcp dport 443 accept\n",
		"\t\tip daddr 192.168.0.0/24 meta l4proto tcp accept\n",
		"\t\t# 0004 action=accept dst4=192.168.0.0/24 proto=tcp (other address family)\n",
		"\t\tip daddr 0.0.0.0/32 tcp dport 9418 accept\n",
		"\t\tip daddr { 50.0.0.1, 50.0.0.2 } tcp dport 80 accept\n",
		"\t\t# 0005 action=drop\n\t\tdrop\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if strings.Contains(out, "qube-v3-firewall-ip6") {
		t.Errorf("IPv6 chain for a qube without IPv6")
	}
	nftCheck(t, out)
}

// A host name that does not resolve stops the export with a clear error.
func TestNFTUnresolvable(t *testing.T) {
	c := Client{Name: "work", IP: "10.137.0.9", Rules: mustRules(t, "action=accept proto=tcp", "action=accept dsthost=nowhere.invalid")}
	_, err := NFT(context.Background(), "sys-net", []Client{c}, fixtureHosts, now)
	var re *ResolveError
	if !errors.As(err, &re) || re.Host != "nowhere.invalid" || re.Rule != 1 {
		t.Fatalf("error %v", err)
	}
	if got := err.Error(); got != "cannot resolve 'nowhere.invalid' (rule 1 of work): no such host" {
		t.Errorf("message %q", got)
	}
}

// nftCheck runs `nft -c -f` on the ruleset: nft sends it to the kernel as a
// check-only netlink batch, which needs CAP_NET_ADMIN.
func nftCheck(t *testing.T, ruleset string) {
	t.Helper()
	if err := runNFT(t, ruleset); err != nil {
		t.Fatalf("nft -c rejects the ruleset: %v\n%s", err, numbered(ruleset))
	}
}

func runNFT(t *testing.T, ruleset string) error {
	t.Helper()
	nft, err := exec.LookPath("nft")
	if err != nil {
		nft = "/usr/sbin/nft"
		if _, err := os.Stat(nft); err != nil {
			t.Skip("nft (Debian package nftables, deps/firewall.deb) is not installed")
		}
	}
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nft, "-c", "-f", f).CombinedOutput()
	if err != nil && strings.Contains(string(out), "Operation not permitted") {
		t.Skipf("nft -c needs CAP_NET_ADMIN (it checks the ruleset through a netlink batch in the kernel): %s", strings.TrimSpace(string(out)))
	}
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%4d %s\n", i+1, l)
	}
	return b.String()
}

// randomRules makes a valid rule set: every field goes through the model's
// validation, so only rules the reference would accept are generated.
func randomRules(rnd *rand.Rand, hosts fakeResolver) []Rule {
	n := rnd.IntN(12)
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	var rules []Rule
	for len(rules) < n {
		var fs []Field
		fs = append(fs, Field{"action", []string{"accept", "drop"}[rnd.IntN(2)]})
		switch rnd.IntN(6) {
		case 1:
			fs = append(fs, Field{"dsthost", fmt.Sprintf("%d.%d.%d.%d/%d", rnd.IntN(256), rnd.IntN(256), rnd.IntN(256), rnd.IntN(256), rnd.IntN(33))})
		case 2:
			fs = append(fs, Field{"dsthost", fmt.Sprintf("%x:%x::%x/%d", rnd.IntN(0x10000), rnd.IntN(0x10000), rnd.IntN(0x10000), rnd.IntN(129))})
		case 3:
			fs = append(fs, Field{"dsthost", names[rnd.IntN(len(names))]})
		case 4:
			fs = append(fs, Field{"dsthost", []string{"10.0.0.1", "::1", "0.0.0.0/0", "::/0"}[rnd.IntN(4)]})
		}
		proto := []string{"", "tcp", "udp", "icmp"}[rnd.IntN(4)]
		if proto != "" {
			fs = append(fs, Field{"proto", proto})
		}
		if (proto == "tcp" || proto == "udp") && rnd.IntN(2) == 0 {
			lo := rnd.IntN(65536)
			if rnd.IntN(2) == 0 {
				fs = append(fs, Field{"dstports", fmt.Sprint(lo)})
			} else {
				fs = append(fs, Field{"dstports", fmt.Sprintf("%d-%d", lo, lo+rnd.IntN(65536-lo))})
			}
		}
		if proto == "icmp" && rnd.IntN(2) == 0 {
			fs = append(fs, Field{"icmptype", fmt.Sprint(rnd.IntN(256))})
		}
		if rnd.IntN(5) == 0 {
			fs = append(fs, Field{"specialtarget", "dns"})
		}
		if rnd.IntN(5) == 0 {
			fs = append(fs, Field{"expire", fmt.Sprint(now.Unix() - 1000 + rnd.Int64N(2000))})
		}
		if rnd.IntN(4) == 0 {
			fs = append(fs, Field{"comment", "random rule, no. " + fmt.Sprint(len(rules))})
		}
		r, err := FromFields(fs)
		if err != nil {
			panic(fmt.Sprintf("generator made an invalid rule %v: %v", fs, err))
		}
		rules = append(rules, r)
	}
	return rules
}

// 200 random valid rule sets: nft accepts each generated ruleset. They are
// checked 20 to a file (one client each); a rejected file is re-checked set
// by set to name the culprit.
func TestNFTRandomRuleSets(t *testing.T) {
	rnd := rand.New(rand.NewPCG(6, 200))
	hosts := fakeResolver{
		"v4only.example": {netip.MustParseAddr("192.0.2.1")},
		"v6only.example": {netip.MustParseAddr("2001:db8::1")},
		"both.example":   {netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("2001:db8::7")},
	}
	const sets, perFile = 200, 20
	var clients []Client
	for i := 0; i < sets; i++ {
		c := Client{Name: fmt.Sprintf("q%03d.x_y-z", i), IP: fmt.Sprintf("10.137.%d.%d", i/254, i%254+1),
			DNS: []string{"10.139.1.1", "10.139.1.2"}, Rules: randomRules(rnd, hosts)}
		if rnd.IntN(2) == 0 {
			c.IP6 = fmt.Sprintf("fd09:24ef:4179::a89:%x", i+1)
		}
		clients = append(clients, c)
	}
	for start := 0; start < sets; start += perFile {
		batch := clients[start : start+perFile]
		out, err := NFT(context.Background(), "sys-firewall", batch, hosts, now)
		if err != nil {
			t.Fatal(err)
		}
		if runNFT(t, out) == nil {
			continue
		}
		for _, c := range batch {
			one, _ := NFT(context.Background(), "sys-firewall", []Client{c}, hosts, now)
			if err := runNFT(t, one); err != nil {
				var rs []string
				for _, r := range c.Rules {
					rs = append(rs, r.APIString())
				}
				t.Errorf("rule set of %s rejected: %v\nrules:\n%s", c.Name, err, strings.Join(rs, "\n"))
			}
		}
	}
}

// The check is not vacuous: nft -c refuses a broken ruleset.
func TestNFTCheckRejectsBrokenRuleset(t *testing.T) {
	out, err := NFT(context.Background(), "sys-net", fixtureClients(t), fixtureHosts, now)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(out, "icmp type", "icmp kind", 1)
	broken = strings.Replace(broken, "tcp dport 22 accept", "tcp dport 22-1 accept", 1)
	if runNFT(t, broken) == nil {
		t.Fatal("nft -c accepted a broken ruleset")
	}
}
