package commands

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

// lsFormats are the presets of --format (the stock qvm-ls ones).
var lsFormats = map[string][]string{
	"simple":  {"NAME", "STATE", "CLASS", "LABEL", "TEMPLATE", "NETVM"},
	"network": {"NAME", "STATE", "NETVM", "IP", "IPBACK", "GATEWAY"},
	"kernel":  {"NAME", "STATE", "CLASS", "TEMPLATE", "KERNEL", "KERNELOPTS"},
	"full":    {"NAME", "STATE", "CLASS", "LABEL", "QID", "XID", "UUID"},
	"prefs":   {"NAME", "LABEL", "TEMPLATE", "NETVM", "VCPUS", "INITIALMEM", "MAXMEM", "VIRT_MODE"},
	"disk":    {"NAME", "STATE", "DISK", "PRIV-CURR", "PRIV-MAX", "PRIV-USED", "ROOT-CURR", "ROOT-MAX", "ROOT-USED"},
}

// lsColumnDocs documents the predefined (non-property) columns.
var lsColumnDocs = map[string]string{
	"STATE":     "Current power state.",
	"CLASS":     "Class of the qube.",
	"GATEWAY":   "Network gateway.",
	"MEMORY":    "Memory currently used by VM",
	"DISK":      "Total disk utilisation.",
	"PRIV-CURR": "Disk utilisation by private image (/home, /usr/local).",
	"PRIV-MAX":  "Maximum available space for private image.",
	"PRIV-USED": "Disk utilisation by private image as a percentage of available space.",
	"ROOT-CURR": "Disk utilisation by root image (/usr, /lib, /etc, ...).",
	"ROOT-MAX":  "Maximum available space for root image.",
	"ROOT-USED": "Disk utilisation by root image as a percentage of available space.",
	"PRIV-POOL": "Storage pool of the private volume.",
	"ROOT-POOL": "Storage pool of the root volume.",
	"FLAGS":     "Type, power state and flags: updateable, provides network, installed by RPM, internal, debug, autostart.",
}

// numericColumns sort as numbers.
var numericColumns = map[string]bool{"MEMORY": true, "DISK": true, "PRIV-CURR": true, "PRIV-MAX": true, "ROOT-CURR": true,
	"XID": true, "ROOT-MAX": true, "MAXMEM": true, "QREXEC-TIMEOUT": true, "SHUTDOWN-TIMEOUT": true, "VCPUS": true,
	"PRIV-USED": true, "ROOT-USED": true}

type lsOptions struct {
	sel                           vmSelection
	format, fields                string
	disk, network, kernel, tree   bool
	rawData, rawList              bool
	helpFormats, helpColumns      bool
	classes, labels, tags, exTags []string
	running, paused, halted       bool
	templateSource, netvmIs       []string
	internal, servicevm           string
	pendingUpdate                 bool
	features, prefs               []string
	sortCol                       string
	reverse, ignoreCase           bool
	spinner, noSpinner            bool
}

func newLsCmd(env *Env) *cobra.Command {
	o := lsOptions{sel: vmSelection{withDom0: true}}
	cmd := &cobra.Command{
		Use:   "ls [flags] [VMNAME...]",
		Short: "List qubes and their properties",
		Long: `Lists qubes as a table. --format picks a preset (simple, network, kernel,
full, prefs, disk) or json; --fields picks columns, where any property name
is a column too. --raw-data prints cells joined by '|' without a header.`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runLs(cmd.Context(), env, o, args) },
		ValidArgsFunction: completeVMs(env, nil),
	}
	o.sel.addFlags(env, cmd)
	f := cmd.Flags()
	f.StringVarP(&o.format, "format", "o", "simple", "preset of columns (simple, network, kernel, full, prefs, disk) or json")
	f.StringVarP(&o.fields, "fields", "O", "", "comma-separated columns")
	f.StringVar(&o.fields, "field", "", "same as --fields")
	_ = f.MarkHidden("field")
	f.BoolVarP(&o.disk, "disk", "d", false, "same as --format disk")
	f.BoolVarP(&o.network, "network", "n", false, "same as --format network")
	f.BoolVarP(&o.kernel, "kernel", "k", false, "same as --format kernel")
	f.BoolVarP(&o.tree, "tree", "t", false, "sort as network tree")
	f.BoolVar(&o.rawData, "raw-data", false, "no header, cells joined by '|'")
	f.BoolVar(&o.rawList, "raw-list", false, "same as --raw-data --fields=name")
	f.BoolVar(&o.helpFormats, "help-formats", false, "list the formats and exit")
	f.BoolVar(&o.helpColumns, "help-columns", false, "list the columns and exit")
	f.StringArrayVar(&o.classes, "class", nil, "only qubes of this class (repeatable)")
	f.StringArrayVar(&o.labels, "label", nil, "only qubes with this label (repeatable)")
	f.StringArrayVar(&o.tags, "tags", nil, "only qubes with this tag (repeatable)")
	f.StringArrayVar(&o.exTags, "exclude-tags", nil, "not qubes with this tag (repeatable)")
	f.BoolVar(&o.running, "running", false, "only running qubes")
	f.BoolVar(&o.paused, "paused", false, "only paused qubes")
	f.BoolVar(&o.halted, "halted", false, "only halted qubes")
	f.StringArrayVar(&o.templateSource, "template-source", nil, "only qubes based on this template (\"\" for none)")
	f.StringArrayVar(&o.netvmIs, "netvm-is", nil, "only qubes with this netvm")
	f.StringVar(&o.internal, "internal", "", "only internal (y) or not internal (n) qubes")
	f.StringVar(&o.servicevm, "servicevm", "", "only service qubes (y) or others (n)")
	f.BoolVar(&o.pendingUpdate, "pending-update", false, "only qubes with updates available")
	f.StringArrayVar(&o.features, "features", nil, "only qubes with feature K=V (K= absent, K='' empty)")
	f.StringArrayVar(&o.prefs, "prefs", nil, "only qubes with property K=V")
	f.StringVar(&o.sortCol, "sort", "NAME", "sort by this column")
	f.BoolVar(&o.reverse, "reverse", false, "reverse the order")
	f.BoolVar(&o.ignoreCase, "ignore-case", false, "case-insensitive sort")
	f.BoolVar(&o.spinner, "spinner", false, "accepted for compatibility (no spinner is shown)")
	f.BoolVar(&o.noSpinner, "no-spinner", false, "accepted for compatibility")
	_ = cmd.RegisterFlagCompletionFunc("class", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return core.Classes(), cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.RegisterFlagCompletionFunc("label", completeLabels(env))
	_ = cmd.RegisterFlagCompletionFunc("format", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		out := []string{"json"}
		for k := range lsFormats {
			out = append(out, k)
		}
		sort.Strings(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

func runLs(ctx context.Context, env *Env, o lsOptions, args []string) error {
	if o.helpFormats {
		names := make([]string, 0, len(lsFormats))
		for k := range lsFormats {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Fprintln(env.IO.Out, "Available formats:")
		for _, n := range names {
			fmt.Fprintf(env.IO.Out, "  %-7s  %s\n", n, strings.Join(lsFormats[n], ", "))
		}
		fmt.Fprintln(env.IO.Out)
		return nil
	}
	if o.helpColumns {
		heads := make([]string, 0, len(lsColumnDocs))
		w := 0
		for k := range lsColumnDocs {
			heads = append(heads, k)
			w = max(w, len(k))
		}
		sort.Strings(heads)
		for _, h := range heads {
			for i, l := range wrap(lsColumnDocs[h], 80-w-4) {
				if i == 0 {
					fmt.Fprintf(env.IO.Out, "  %-*s  %s\n", w, h, l)
				} else {
					fmt.Fprintf(env.IO.Out, "%s%s\n", strings.Repeat(" ", w+4), l)
				}
			}
		}
		fmt.Fprintln(env.IO.Out)
		fmt.Fprintln(env.IO.Out, "Additionally any VM property may be used as a column, see qvm-prefs --help-properties for available values")
		return nil
	}
	features, err := parseKV("features", o.features)
	if err != nil {
		return err
	}
	prefs, err := parseKV("prefs", o.prefs)
	if err != nil {
		return err
	}
	for _, yn := range []string{o.internal, o.servicevm} {
		switch yn {
		case "", "y", "yes", "n", "no":
		default:
			return usagef("argument --internal/--servicevm: invalid choice: '%s' (choose from 'y', 'yes', 'n', 'no')", yn)
		}
	}
	format := o.format
	switch {
	case o.disk:
		format = "disk"
	case o.network:
		format = "network"
	case o.kernel:
		format = "kernel"
	}
	asJSON := format == "json"
	var cols []string
	switch {
	case o.rawList:
		cols = []string{"NAME"}
		o.rawData = true
	case o.fields != "":
		for _, c := range strings.Split(o.fields, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cols = append(cols, strings.ToUpper(c))
			}
		}
	case asJSON:
		cols = lsFormats["simple"]
	default:
		var ok bool
		if cols, ok = lsFormats[format]; !ok {
			return usagef("argument --format/-o: invalid choice: '%s'", format)
		}
	}
	return env.view(ctx, func(app *core.App) error {
		env.attachPowerStates(ctx, app, env.progFor("qvm ls"))
		doms, err := o.sel.resolve(app, args)
		if err != nil {
			return err
		}
		var kept []*core.Domain
		for _, d := range doms {
			if o.keep(app, d, features, prefs) {
				kept = append(kept, d)
			}
		}
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].Name() < kept[j].Name() })
		type row struct {
			d     *core.Domain
			depth int
			cells []string
		}
		var rows []row
		order := kept
		depths := map[*core.Domain]int{}
		if o.tree {
			order, depths = treeOrder(app, kept)
		}
		st := storage.Open(app, env.storageOptions())
		for _, d := range order {
			r := row{d: d, depth: depths[d]}
			for _, c := range cols {
				r.cells = append(r.cells, cell(app, st, d, c))
			}
			rows = append(rows, r)
		}
		if !o.tree {
			idx := -1
			for i, c := range cols {
				if c == strings.ToUpper(o.sortCol) {
					idx = i
				}
			}
			if idx >= 0 {
				col := cols[idx]
				sort.SliceStable(rows, func(i, j int) bool {
					a, b := rows[i].cells[idx], rows[j].cells[idx]
					if numericColumns[col] {
						return numOf(a) < numOf(b)
					}
					if o.ignoreCase {
						return strings.ToUpper(a) < strings.ToUpper(b)
					}
					return a < b
				})
			}
			if o.reverse {
				for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
					rows[i], rows[j] = rows[j], rows[i]
				}
			}
		}
		if asJSON {
			// "-" is the table's way of saying "none"; JSON says null.
			out := make([]map[string]any, 0, len(rows))
			for _, r := range rows {
				m := map[string]any{}
				for i, c := range cols {
					var v any = r.cells[i]
					if r.cells[i] == "-" {
						v = nil
					}
					m[strings.ToLower(strings.ReplaceAll(c, "-", "_"))] = v
				}
				out = append(out, m)
			}
			return writeJSON(env.IO.Out, out)
		}
		if o.rawData {
			var b strings.Builder
			for _, r := range rows {
				b.WriteString(strings.Join(r.cells, "|"))
				b.WriteByte('\n')
			}
			_, err := fmt.Fprint(env.IO.Out, b.String())
			return err
		}
		table := make([][]string, 0, len(rows)+1)
		head := make([]string, len(cols))
		for i, c := range cols {
			head[i] = strings.ReplaceAll(c, "_", "-")
		}
		table = append(table, head)
		for _, r := range rows {
			if r.depth > 0 && len(r.cells) > 0 && cols[0] == "NAME" {
				r.cells[0] = strings.Repeat("  ", r.depth-1) + "└─" + r.cells[0]
			}
			table = append(table, r.cells)
		}
		printTable(env.IO.Out, table)
		return nil
	})
}

func numOf(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0
	}
	return f
}

type kvFilter struct {
	key   string
	value string
	none  bool // K= : absent / None
}

func parseKV(opt string, list []string) ([]kvFilter, error) {
	var out []kvFilter
	for _, s := range list {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, usagef("Invalid argument: --%s %s", opt, s)
		}
		f := kvFilter{key: k, value: v}
		switch v {
		case "":
			f.none = true
		case "''", `""`:
			f.value = ""
		}
		out = append(out, f)
	}
	return out, nil
}

func yes(s string) bool { return s == "y" || s == "yes" }

func (o *lsOptions) keep(app *core.App, d *core.Domain, features, prefs []kvFilter) bool {
	if len(o.classes) > 0 && !slices.Contains(o.classes, d.Class) {
		return false
	}
	if len(o.labels) > 0 {
		l, _ := app.Get(d, "label")
		if !slices.Contains(o.labels, l.S) {
			return false
		}
	}
	if len(o.tags) > 0 {
		hit := false
		for _, t := range o.tags {
			hit = hit || d.Tags[t]
		}
		if !hit {
			return false
		}
	}
	for _, t := range o.exTags {
		if d.Tags[t] {
			return false
		}
	}
	if o.running || o.paused || o.halted {
		ps := powerState(app, d)
		if !(o.running && ps == "Running" || o.paused && ps == "Paused" || o.halted && ps == "Halted") {
			return false
		}
	}
	if len(o.templateSource) > 0 {
		t := ""
		if d.HasTemplate() {
			v, _ := app.Get(d, "template")
			t = v.S
		}
		if !slices.Contains(o.templateSource, t) {
			return false
		}
	}
	if len(o.netvmIs) > 0 {
		v, err := app.Get(d, "netvm")
		if err != nil || v.None || !slices.Contains(o.netvmIs, v.S) {
			return false
		}
	}
	truthy := func(f string) bool {
		v, _ := d.Feature(f)
		return v == "1" || v == "true" || v == "True"
	}
	if o.internal != "" && truthy("internal") != yes(o.internal) {
		return false
	}
	if o.servicevm != "" && truthy("servicevm") != yes(o.servicevm) {
		return false
	}
	if o.pendingUpdate {
		if v, _ := d.Feature("updates-available"); v == "" {
			return false
		}
	}
	for _, f := range features {
		v, ok := d.Feature(f.key)
		if f.none {
			if ok {
				return false
			}
			continue
		}
		if !ok || v != f.value {
			return false
		}
	}
	for _, p := range prefs {
		if p.none {
			return false // str(value) never equals None's "" form here
		}
		v, err := app.Get(d, p.key)
		if err != nil || v.String() != p.value {
			return false
		}
	}
	return true
}

// treeOrder: qubes outside any network first, then each top network
// provider followed by the qubes behind it, depth-first.
func treeOrder(app *core.App, doms []*core.Domain) ([]*core.Domain, map[*core.Domain]int) {
	in := map[*core.Domain]bool{}
	for _, d := range doms {
		in[d] = true
	}
	depth := map[*core.Domain]int{}
	var out []*core.Domain
	providesNet := func(d *core.Domain) bool { v, _ := app.Get(d, "provides_network"); return v.Bool() }
	netvm := func(d *core.Domain) string {
		if !d.IsQubesVM() {
			return ""
		}
		v, err := app.Get(d, "netvm")
		if err != nil || v.None {
			return ""
		}
		return v.S
	}
	for _, d := range doms {
		if d.Class == "AdminVM" || (netvm(d) == "" && !providesNet(d)) {
			out = append(out, d)
		}
	}
	var walk func(d *core.Domain, level int)
	walk = func(d *core.Domain, level int) {
		if in[d] {
			out = append(out, d)
			depth[d] = level
		}
		for _, c := range app.ConnectedVMs(d) {
			if level < 32 {
				walk(c, level+1)
			}
		}
	}
	for _, d := range doms {
		if d.Class != "AdminVM" && netvm(d) == "" && providesNet(d) {
			walk(d, 0)
		}
	}
	return out, depth
}

func propColumn(app *core.App, d *core.Domain, name string) string {
	v, err := app.Get(d, name)
	if err != nil || v.None || v.S == "" {
		return "-"
	}
	return v.S
}

// volumeCell is a disk column: the volume's real size and usage from its
// driver, in MiB (0 when the qube has no such volume).
func volumeCell(st *storage.Storage, d *core.Domain, vol, what string) string {
	c := d.Volume(vol)
	if what == "POOL" {
		if c == nil {
			return "-"
		}
		return c.Pool
	}
	if c == nil {
		return "0"
	}
	v, err := st.Volume(d, vol)
	if err != nil {
		return "-"
	}
	switch what {
	case "MAX":
		return strconv.FormatInt(v.Size()/(1<<20), 10)
	case "USED":
		if size := v.Size(); size > 0 {
			return strconv.FormatInt(v.Usage()*100/size, 10) + "%"
		}
		return "0"
	}
	return strconv.FormatInt(v.Usage()/(1<<20), 10)
}

// diskCell is the total usage of a qube's volumes in MiB.
func diskCell(st *storage.Storage, d *core.Domain) string {
	vols, err := st.Volumes(d)
	if err != nil {
		return "-"
	}
	var n int64
	for _, v := range vols {
		n += v.Usage()
	}
	return strconv.FormatInt(n/(1<<20), 10)
}

func cell(app *core.App, st *storage.Storage, d *core.Domain, col string) string {
	switch col {
	case "NAME":
		return d.Name()
	case "STATE":
		return powerState(app, d)
	case "CLASS":
		return d.Class
	case "GATEWAY":
		if n, err := app.Get(d, "netvm"); err == nil && !n.None {
			if nd, err := app.Domain(n.S); err == nil {
				return propColumn(app, nd, "gateway")
			}
		}
		return "-"
	case "MEMORY":
		return "-"
	case "DISK":
		return diskCell(st, d)
	case "PRIV-CURR":
		return volumeCell(st, d, "private", "CURR")
	case "ROOT-CURR":
		return volumeCell(st, d, "root", "CURR")
	case "PRIV-USED":
		return volumeCell(st, d, "private", "USED")
	case "ROOT-USED":
		return volumeCell(st, d, "root", "USED")
	case "PRIV-MAX":
		return volumeCell(st, d, "private", "MAX")
	case "ROOT-MAX":
		return volumeCell(st, d, "root", "MAX")
	case "PRIV-POOL":
		return volumeCell(st, d, "private", "POOL")
	case "ROOT-POOL":
		return volumeCell(st, d, "root", "POOL")
	case "FLAGS":
		return flags(app, d)
	case "INITIALMEM":
		return propColumn(app, d, "memory")
	}
	return propColumn(app, d, strings.ToLower(strings.ReplaceAll(col, "-", "_")))
}

func flags(app *core.App, d *core.Domain) string {
	b := []byte("--------")
	switch d.Class {
	case "AdminVM":
		b[0] = '0'
	case "AppVM":
		b[0] = 'a'
	case "DispVM":
		b[0] = 'd'
	case "StandaloneVM":
		b[0] = 's'
	case "TemplateVM":
		b[0] = 't'
	}
	if vm, _ := app.Get(d, "virt_mode"); vm.S == "hvm" && b[0] != '-' {
		b[0] -= 'a' - 'A'
	}
	switch ps := powerState(app, d); ps {
	case "Running", "Transient", "Paused", "Suspended", "Halting", "Dying", "Crashed":
		b[1] = strings.ToLower(ps)[0]
	case "NA":
		b[1] = '?'
	}
	set := func(i int, prop string, c byte) {
		if v, err := app.Get(d, prop); err == nil && v.Bool() {
			b[i] = c
		}
	}
	set(2, "updateable", 'U')
	set(3, "provides_network", 'N')
	set(4, "installed_by_rpm", 'R')
	if v, _ := d.Feature("internal"); v != "" {
		b[5] = 'i'
	}
	set(6, "debug", 'D')
	set(7, "autostart", 'A')
	return string(b)
}
