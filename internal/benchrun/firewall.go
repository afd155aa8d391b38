package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/qvm-dev/qvm/core/firewall"
	"github.com/qvm-dev/qvm/internal/stategen"
)

// benchFirewall: listing, changing and exporting a qube with 1000 rules,
// and the nftables export of a netvm with 100 connected qubes.
func benchFirewall(r *runner) (string, error) {
	dir := filepath.Join(r.tmp, "firewall")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	app, err := stategen.Generate(dir, 110)
	if err != nil {
		return "", err
	}
	sysNet, err := app.Domain("sys-net")
	if err != nil {
		return "", err
	}
	// IPv6 on for the whole chain, so the export writes both families.
	if err := app.SetFeature(sysNet, "ipv6", "1"); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "qubes.xml"), app.Marshal(), 0o660); err != nil {
		return "", err
	}
	now := time.Now()
	var hosts strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&hosts, "192.0.2.%d host%d.example\n2001:db8::%x host%d.example\n", i+1, i, i+1, i)
	}
	hostsFile := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		return "", err
	}
	rulesFor := func(n, seed int) ([]firewall.Rule, error) {
		var rules []firewall.Rule
		for i := 0; i < n; i++ {
			k := i + seed
			var s string
			switch k % 5 {
			case 0:
				s = fmt.Sprintf("action=accept dst4=10.%d.%d.0/24 proto=tcp dstports=%d", k%256, k/256%256, 1+k%65535)
			case 1:
				s = fmt.Sprintf("action=drop dst6=2001:db8:%x::/48 proto=udp dstports=1000-%d", k%65536, 1000+k%60000)
			case 2:
				s = fmt.Sprintf("action=accept dsthost=host%d.example proto=tcp dstports=443", k%50)
			case 3:
				s = fmt.Sprintf("action=drop proto=icmp icmptype=%d comment=rule %d", k%256, k)
			default:
				s = "action=accept specialtarget=dns"
			}
			r, err := firewall.ParseAPIString(s)
			if err != nil {
				return nil, err
			}
			rules = append(rules, r)
		}
		return append(rules, firewall.Rule{Action: "drop"}), nil
	}
	connected := 0
	for _, d := range app.Domains() {
		v, err := app.Get(d, "netvm")
		if err != nil || v.None || v.S != "sys-firewall" {
			continue
		}
		connected++
		n := 10
		if d.Name() == "qube-0000" {
			n = 999
		}
		rules, err := rulesFor(n, connected*7)
		if err != nil {
			return "", err
		}
		if err := firewall.Save(app.VMDir(d), rules, now); err != nil {
			return "", err
		}
	}
	env := []string{"QVM_STATE_DIR=" + dir, "QVM_CONFIG=/nonexistent"}
	nftOut := filepath.Join(dir, "all.nft")
	cmd := exec.Command(r.qvm, "firewall", "export", "--netvm", "sys-firewall", "--format", "nft", "--hosts", hostsFile)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("export: %w: %s", err, stderr.String())
	}
	if err := os.WriteFile(nftOut, out, 0o644); err != nil {
		return "", err
	}
	rows := []struct {
		name string
		args func(int) []string
	}{
		{"`qvm firewall qube-0000` (list, 1000 rules)", func(int) []string { return []string{r.qvm, "firewall", "qube-0000"} }},
		{"`qvm firewall qube-0000 --raw`", func(int) []string { return []string{r.qvm, "firewall", "qube-0000", "--raw"} }},
		// Alternate add and del so every run rewrites the 1000-rule file.
		{"`qvm firewall qube-0000 add` / `del` (rewrites 1000 rules)", func(i int) []string {
			if i%2 == 0 {
				return []string{r.qvm, "firewall", "qube-0000", "add", "accept", "10.99.0.1", "tcp", "22"}
			}
			return []string{r.qvm, "firewall", "qube-0000", "del", "--rule-no", "1000"}
		}},
		{"`qvm firewall export qube-0000 --format qubesdb`", func(int) []string {
			return []string{r.qvm, "firewall", "export", "qube-0000", "--format", "qubesdb"}
		}},
		{"`qvm firewall export qube-0000 --format nft` (1000 rules)", func(int) []string {
			return []string{r.qvm, "firewall", "export", "qube-0000", "--format", "nft", "--hosts", hostsFile}
		}},
		{fmt.Sprintf("`qvm firewall export --netvm sys-firewall --format nft` (%d qubes)", connected), func(int) []string {
			return []string{r.qvm, "firewall", "export", "--netvm", "sys-firewall", "--format", "nft", "--hosts", hostsFile}
		}},
	}
	if nft, err := exec.LookPath("nft"); err == nil {
		rows = append(rows, struct {
			name string
			args func(int) []string
		}{fmt.Sprintf("for comparison: `nft -c -f` of that ruleset (%d KiB)", len(out)/1024), func(int) []string { return []string{nft, "-c", "-f", nftOut} }})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "State: %d qubes (internal/stategen), %d of them connected to sys-firewall with 10 rules each; qube-0000 has 1000 rules (IPv4, IPv6, host names from a --hosts file, ICMP, DNS). The ipv6 feature is on (sys-net), so every qube gets an IPv4 and an IPv6 chain.\n\n", 110, connected)
	b.WriteString("| command | wall time (median) | peak RSS |\n|---|---|---|\n")
	for _, row := range rows {
		res, err := r.measure(env, row.args)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row.name, ms(res.median), mib(res.maxRSS))
	}
	b.WriteString("\nReference: the stock `qvm-firewall` talks to qubesd over the Admin API and cannot run on this machine; there is no measured figure to compare with.\n")
	return b.String(), nil
}
