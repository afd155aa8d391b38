package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/firewall"
	"github.com/qvm-dev/qvm/core/store"
)

type firewallOptions struct {
	raw, reload bool
	format      string
	before      int
	ruleNo      int
}

var firewallActions = []string{"add", "del", "list", "reset"}

func newFirewallCmd(env *Env) *cobra.Command {
	o := firewallOptions{before: -1, ruleNo: -1}
	cmd := &cobra.Command{
		Use:   "firewall [flags] VMNAME [list | add [--before N] RULE... | del [--rule-no N | RULE...] | reset]",
		Short: "List and change the outgoing-traffic rules of a qube",
		Long: `Shows and edits a qube's firewall rules (its firewall.xml). Rules apply in
order, the first match decides, and traffic no rule matches is dropped. A qube
without rules has the single rule "accept".

RULE is key=value tokens and bare values: bare values fill action, dsthost,
proto, then dstports (after tcp/udp) or icmptype (after icmp). Keys: action
(accept|drop), dsthost (dst4, dst6: an address, address/prefix or host name),
proto (tcp|udp|icmp), dstports (N or A-B), icmptype (0-255), specialtarget
(dns), expire (epoch seconds or +SECONDS from now), comment (one argument).

'qvm firewall export' writes what the netvm applies.`,
		Example: `  qvm firewall work
  qvm firewall work add accept dsthost=qubes-os.org proto=tcp dstports=443
  qvm firewall work add --before 0 drop 192.168.0.0/16 'comment=no LAN'
  qvm firewall work add accept 10.0.0.5 tcp 22 expire=+3600
  qvm firewall work del --rule-no 1
  qvm firewall work reset`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runFirewall(cmd.Context(), env, o, args) },
		ValidArgsFunction: completeFirewallArgs(env),
	}
	f := cmd.Flags()
	f.BoolVar(&o.raw, "raw", false, "list: print the rules as key=value lines")
	f.BoolVarP(&o.reload, "reload", "r", false, "list: accepted for compatibility (no qubesd to notify; see 'qvm firewall export')")
	f.StringVar(&o.format, "format", "table", "list: table or json")
	f.IntVar(&o.before, "before", -1, "add: insert before rule N (0-based) instead of appending")
	f.IntVar(&o.ruleNo, "rule-no", -1, "del: remove rule N (0-based)")
	_ = cmd.RegisterFlagCompletionFunc("format", fixedCompletion("table", "json"))
	cmd.AddCommand(newFirewallExportCmd(env))
	return cmd
}

func fixedCompletion(words ...string) completeFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return words, cobra.ShellCompDirectiveNoFileComp
	}
}

// hasFirewall: the classes with network rules (not dom0, not RemoteVM).
func hasFirewall(d *core.Domain) bool { return d.Class != "AdminVM" && d.Class != "RemoteVM" }

// completeFirewallArgs: VMNAME, the action, then rule keys and values.
func completeFirewallArgs(env *Env) completeFunc {
	return func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		switch len(args) {
		case 0:
			return completeVMs(env, hasFirewall)(cmd, args, s)
		case 1:
			return firewallActions, cobra.ShellCompDirectiveNoFileComp
		}
		if args[1] != "add" && args[1] != "del" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if k, _, ok := strings.Cut(s, "="); ok {
			vals := map[string][]string{"action": {"accept", "drop"}, "proto": {"tcp", "udp", "icmp"},
				"specialtarget": {"dns"}, "expire": {"+3600", "+86400"}}[k]
			out := make([]string, 0, len(vals))
			for _, v := range vals {
				out = append(out, k+"="+v)
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		out := []string{"action=", "dsthost=", "proto=", "dstports=", "icmptype=", "specialtarget=", "expire=", "comment="}
		if len(args) == 2 {
			out = append(out, "accept", "drop")
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// firewallError maps rule errors to what qvm-firewall shows: grammar errors
// are usage errors (exit 2), refused values "Error: <msg>" (exit 1).
func firewallError(err error) error {
	var ae *firewall.ArgsError
	var fe *firewall.Error
	var le *firewall.LoadError
	var re *firewall.ResolveError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return &UsageError{Msg: ae.Msg}
	case errors.As(err, &fe), errors.As(err, &le), errors.As(err, &re):
		return &ExitError{Code: 1, Msg: "Error: " + oneLine(err.Error()), Raw: true}
	}
	return err
}

func firewallVM(app *core.App, name string) (*core.Domain, error) {
	d, err := oneVM(app, name)
	if err != nil {
		return nil, err
	}
	if !hasFirewall(d) {
		return nil, &ExitError{Code: 1, Msg: fmt.Sprintf("Error: %s has no firewall (class %s)", name, d.Class), Raw: true}
	}
	return d, nil
}

func runFirewall(ctx context.Context, env *Env, o firewallOptions, args []string) error {
	if len(args) == 0 {
		return usagef("the following arguments are required: VMNAME")
	}
	action, rest := "list", []string(nil)
	if len(args) > 1 {
		action, rest = args[1], args[2:]
	}
	if o.before != -1 && action != "add" {
		return usagef("--before is only valid with add")
	}
	if o.ruleNo != -1 && action != "del" {
		return usagef("--rule-no is only valid with del")
	}
	switch action {
	case "list":
		if len(rest) > 0 {
			return usagef("unrecognized arguments: %s", strings.Join(rest, " "))
		}
		if o.format != "table" && o.format != "json" {
			return usagef("argument --format: invalid choice: '%s' (choose from 'table', 'json')", o.format)
		}
		return firewallError(env.view(ctx, func(app *core.App) error {
			d, err := firewallVM(app, args[0])
			if err != nil {
				return err
			}
			rules, err := qubeRules(app, d)
			if err != nil {
				return err
			}
			now := env.Now()
			printRules(env, o, firewall.Active(rules, now), now)
			if o.reload {
				env.infof(env.progFor("qvm firewall"), "no qubesd to reload; apply the rules with 'qvm firewall export'")
			}
			return nil
		}))
	case "add", "del", "reset":
	default:
		return usagef("argument action: invalid choice: '%s' (choose from %s)", action, quoteList(firewallActions))
	}
	now := env.Now()
	var rule firewall.Rule
	switch {
	case action == "reset" && len(rest) > 0:
		return usagef("unrecognized arguments: %s", strings.Join(rest, " "))
	case action == "add" && len(rest) == 0:
		return usagef("the following arguments are required: RULE")
	case action == "del" && o.ruleNo < 0 && len(rest) == 0:
		if o.ruleNo != -1 {
			return usagef("argument --rule-no: %d is not a rule number", o.ruleNo)
		}
		return usagef("one of --rule-no or RULE is required")
	case action == "del" && o.ruleNo >= 0 && len(rest) > 0:
		return usagef("argument --rule-no: not allowed with RULE")
	case action == "add" && o.before < -1:
		return usagef("argument --before: %d is not a rule number", o.before)
	case len(rest) > 0:
		r, err := firewall.ParseArgs(rest, now)
		if err != nil {
			return firewallError(err)
		}
		rule = r
	}
	return firewallError(env.update(ctx, func(app *core.App) error {
		d, err := firewallVM(app, args[0])
		if err != nil {
			return err
		}
		dir := app.VMDir(d)
		all, err := qubeRules(app, d)
		if err != nil {
			return err
		}
		rules := firewall.Active(all, now)
		switch action {
		case "reset":
			rules = firewall.DefaultRules()
		case "add":
			at := len(rules)
			if o.before >= 0 {
				if o.before > len(rules) {
					return &firewall.Error{Msg: fmt.Sprintf("--before %d: there are only %d rules", o.before, len(rules))}
				}
				at = o.before
			}
			rules = append(rules[:at], append([]firewall.Rule{rule}, rules[at:]...)...)
			for i := 0; i < at; i++ {
				if rules[i].MatchesAll() {
					env.warnf(env.progFor("qvm firewall"), "note: rule %d '%s' matches all traffic, so the new rule %d never applies (see --before)", i, rules[i].String(), at)
					break
				}
			}
		case "del":
			at := o.ruleNo
			if len(rest) > 0 {
				at = -1
				want := rule.String()
				for i := range rules {
					if rules[i].String() == want {
						at = i
						break
					}
				}
				if at < 0 {
					return &firewall.Error{Msg: "no such rule: " + want}
				}
			} else if at >= len(rules) {
				return &firewall.Error{Msg: fmt.Sprintf("--rule-no %d: there are only %d rules", at, len(rules))}
			}
			rules = append(rules[:at], rules[at+1:]...)
		}
		return firewall.Save(dir, rules, now)
	}))
}

func quoteList(ws []string) string {
	q := make([]string, len(ws))
	for i, w := range ws {
		q[i] = "'" + w + "'"
	}
	return strings.Join(q, ", ")
}

// ruleRow is one listed rule; the table and JSON read the same rows.
type ruleRow struct {
	No            int    `json:"no"`
	Action        string `json:"action"`
	DstHost       string `json:"dsthost,omitempty"`
	Proto         string `json:"proto,omitempty"`
	DstPorts      string `json:"dstports,omitempty"`
	SpecialTarget string `json:"specialtarget,omitempty"`
	ICMPType      *int   `json:"icmptype,omitempty"`
	Expire        *int64 `json:"expire,omitempty"`
	ExpiresIn     *int64 `json:"expires_in,omitempty"`
	Comment       string `json:"comment,omitempty"`
	Rule          string `json:"rule"`
}

func rowsOf(rules []firewall.Rule, now time.Time) []ruleRow {
	rows := make([]ruleRow, 0, len(rules))
	for i, r := range rules {
		row := ruleRow{No: i, Action: r.Action, Proto: r.Proto, SpecialTarget: r.SpecialTarget, Comment: r.Comment, Rule: r.String()}
		// The client leaves a prefix-0 destination out: it means any host.
		if r.DstKind != firewall.DstNone && !strings.HasSuffix(r.DstHost, "/0") {
			row.DstHost = r.DstHost
		}
		if r.HasPorts {
			row.DstPorts, _ = r.Field("dstports")
		}
		if r.HasICMP {
			n := r.ICMPType
			row.ICMPType = &n
		}
		if r.HasExpire {
			e, in := r.Expire, int64(time.Unix(r.Expire, 0).Sub(now)/time.Second)
			row.Expire, row.ExpiresIn = &e, &in
		}
		rows = append(rows, row)
	}
	return rows
}

func printRules(env *Env, o firewallOptions, rules []firewall.Rule, now time.Time) {
	rows := rowsOf(rules, now)
	switch {
	case o.raw:
		w := bufio.NewWriter(env.IO.Out)
		for _, r := range rows {
			fmt.Fprintln(w, r.Rule)
		}
		w.Flush()
	case o.format == "json":
		_ = writeJSON(env.IO.Out, rows)
	default:
		dash := func(s string) string {
			if s == "" {
				return "-"
			}
			return s
		}
		table := [][]string{{"NO", "ACTION", "HOST", "PROTOCOL", "PORT(S)", "SPECIAL TARGET", "ICMP TYPE", "EXPIRE", "COMMENT"}}
		for _, r := range rows {
			icmp, exp := "-", "-"
			if r.ICMPType != nil {
				icmp = strconv.Itoa(*r.ICMPType)
			}
			if r.ExpiresIn != nil {
				exp = fmt.Sprintf("%+ds", *r.ExpiresIn)
			}
			table = append(table, []string{strconv.Itoa(r.No), r.Action, dash(r.DstHost), dash(r.Proto), dash(r.DstPorts),
				dash(r.SpecialTarget), icmp, exp, dash(r.Comment)})
		}
		printTable(env.IO.Out, table)
	}
}

// --- export ---

type exportOptions struct {
	format string
	netvm  string
	hosts  string
}

func newFirewallExportCmd(env *Env) *cobra.Command {
	o := exportOptions{}
	cmd := &cobra.Command{
		Use:   "export [flags] (VMNAME | --netvm NETVM)",
		Short: "Print what a netvm applies for its qubes' rules (QubesDB keys or nftables)",
		Long: `Prints the rules of one qube (VMNAME) or of every qube whose netvm is NETVM
in the form the netvm applies them:

  --format qubesdb  the QubesDB keys qubesd writes into the netvm, one
                    "KEY VALUE" line per write in write order ("rm KEY/"
                    clears a subtree first; a key alone has the empty value)
  --format json     the same operations as JSON
  --format nft      an nftables ruleset (nft -f) with a chain per qube and
                    address family; IPv6 only for qubes with an IPv6 address
                    (the ipv6 feature on along the netvm chain)

Host names in rules are resolved now (nft only): with --hosts from a file in
/etc/hosts format (dom0 usually has no DNS), else with the system resolver. A
name that does not resolve is an error and nothing is printed. Every client
is exported, running or not: qvm works on the state files.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFirewallExport(cmd.Context(), env, o, args)
		},
		ValidArgsFunction: completeFirstVM(env, hasFirewall),
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "qubesdb", "qubesdb, json or nft")
	f.StringVar(&o.netvm, "netvm", "", "export every qube connected to NETVM")
	f.StringVar(&o.hosts, "hosts", "", "resolve host names from this hosts-format file instead of DNS")
	_ = cmd.RegisterFlagCompletionFunc("format", fixedCompletion("qubesdb", "json", "nft"))
	_ = cmd.RegisterFlagCompletionFunc("netvm", completeVMs(env, nil))
	return cmd
}

func runFirewallExport(ctx context.Context, env *Env, o exportOptions, args []string) error {
	switch {
	case o.format != "qubesdb" && o.format != "json" && o.format != "nft":
		return usagef("argument --format: invalid choice: '%s' (choose from 'qubesdb', 'json', 'nft')", o.format)
	case len(args) > 1:
		return usagef("unrecognized arguments: %s", strings.Join(args[1:], " "))
	case len(args) == 1 && o.netvm != "":
		return usagef("argument --netvm: not allowed with VMNAME")
	case len(args) == 0 && o.netvm == "":
		return usagef("the following arguments are required: VMNAME or --netvm")
	}
	var res firewall.Resolver = net.DefaultResolver
	if o.hosts != "" {
		h, err := readHosts(o.hosts)
		if err != nil {
			return err
		}
		res = h
	}
	now := env.Now()
	var netvm string
	var clients []firewall.Client
	err := env.view(ctx, func(app *core.App) error {
		var doms []*core.Domain
		if o.netvm != "" {
			n, err := oneVM(app, o.netvm)
			if err != nil {
				return err
			}
			netvm = n.Name()
			if v, err := app.Get(n, "provides_network"); err != nil || !v.Bool() {
				return &firewall.Error{Msg: fmt.Sprintf("%s does not provide network (provides_network is False)", netvm)}
			}
			for _, d := range app.Domains() {
				if v, err := app.Get(d, "netvm"); err == nil && !v.None && v.S == netvm && d != n && hasFirewall(d) {
					doms = append(doms, d)
				}
			}
		} else {
			d, err := firewallVM(app, args[0])
			if err != nil {
				return err
			}
			v, err := app.Get(d, "netvm")
			if err != nil || v.None {
				return &firewall.Error{Msg: fmt.Sprintf("%s has no netvm: no qube applies its rules", d.Name())}
			}
			netvm = v.S
			doms = []*core.Domain{d}
		}
		for _, d := range doms {
			c, err := exportClient(app, d)
			if err != nil {
				return err
			}
			clients = append(clients, c)
		}
		return nil
	})
	if err != nil {
		return firewallError(err)
	}
	var ops []firewall.Op
	if o.format != "nft" {
		for _, c := range clients {
			ops = append(ops, firewall.QubesDB(c, now)...)
		}
		if o.netvm != "" {
			ops = append(ops, firewall.NetvmKeys(clients)...)
		}
	}
	w := bufio.NewWriter(env.IO.Out)
	defer w.Flush()
	switch o.format {
	case "json":
		if ops == nil {
			ops = []firewall.Op{}
		}
		return writeJSON(w, ops)
	case "nft":
		s, err := firewall.NFT(ctx, netvm, clients, res, now)
		if err != nil {
			return firewallError(err)
		}
		w.WriteString(s)
	default:
		for _, op := range ops {
			switch {
			case op.Remove:
				fmt.Fprintf(w, "rm %s\n", op.Key)
			case op.Value == "":
				fmt.Fprintln(w, op.Key)
			default:
				fmt.Fprintf(w, "%s %s\n", op.Key, op.Value)
			}
		}
	}
	return nil
}

// exportClient gathers what the netvm needs about d.
func exportClient(app *core.App, d *core.Domain) (firewall.Client, error) {
	get := func(name string) string {
		if v, err := app.Get(d, name); err == nil && !v.None {
			return v.S
		}
		return ""
	}
	c := firewall.Client{Name: d.Name(), IP: get("ip"), IP6: get("ip6"), VisibleIP: get("visible_ip"),
		VisibleIP6: get("visible_ip6"), VisibleGateway: get("visible_gateway"), DNS: strings.Fields(get("dns"))}
	rules, err := qubeRules(app, d)
	c.Rules = rules
	return c, err
}

// qubeRules are d's rules as stored. A DispVM without a file of its own has
// its template's (the reference copies them in memory when it starts).
func qubeRules(app *core.App, d *core.Domain) ([]firewall.Rule, error) {
	rules, exists, err := firewall.Load(app.VMDir(d))
	if err != nil || exists || d.Class != "DispVM" {
		return rules, err
	}
	if t, err := app.Get(d, "template"); err == nil && !t.None {
		if td, err := app.Domain(t.S); err == nil {
			rules, _, err = firewall.Load(app.VMDir(td))
			return rules, err
		}
	}
	return rules, nil
}

// hostsTable resolves names from an /etc/hosts-format file.
type hostsTable map[string][]netip.Addr

func readHosts(path string) (hostsTable, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--hosts: %w", err)
	}
	h := hostsTable{}
	for n, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		a, err := netip.ParseAddr(fs[0])
		if err != nil || len(fs) < 2 {
			return nil, fmt.Errorf("--hosts %s:%d: want ADDRESS NAME...", path, n+1)
		}
		for _, name := range fs[1:] {
			h[strings.ToLower(name)] = append(h[strings.ToLower(name)], a)
		}
	}
	return h, nil
}

func (h hostsTable) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range h[host] {
		if (network == "ip4") == a.Unmap().Is4() {
			out = append(out, a)
		}
	}
	if len(h[host]) == 0 {
		return nil, fmt.Errorf("not in the --hosts file")
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s address in the --hosts file", network)
	}
	return out, nil
}

// removingFirewalls runs a removal, then deletes the firewall.xml of every
// qube it removed, once qubes.xml no longer lists it (a crash in between
// leaves an unused file, never a qube without its rules). A name taken
// again meanwhile keeps its file.
func removingFirewalls(ctx context.Context, env *Env, remove func() error) error {
	dirs := map[string]string{}
	_ = env.view(ctx, func(app *core.App) error {
		for _, d := range app.Domains() {
			dirs[d.Name()] = app.VMDir(d)
		}
		return nil
	})
	rerr := remove()
	err := env.update(ctx, func(app *core.App) error {
		for name, dir := range dirs {
			if _, err := app.Domain(name); err == nil {
				continue
			}
			if err := firewall.Remove(dir); err != nil {
				env.warnf(env.progFor("qvm remove"), "%v", err)
			}
		}
		return nil
	})
	if rerr != nil {
		return rerr
	}
	var me *store.MissingError
	if errors.As(err, &me) {
		return nil
	}
	return err
}
