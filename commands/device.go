package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/devices"
)

// qvm device CLASS SUBCOMMAND: the grammar of the stock qvm-device
// (spec/devices.md §8); qvm-pci, qvm-block, qvm-usb are aliases.
func newDeviceCmd(env *Env) *cobra.Command {
	var listClasses bool
	cmd := &cobra.Command{
		Use:   "device [--list-device-classes] CLASS [list|attach|detach|assign|unassign|info] ...",
		Short: "List, attach and assign PCI, block and USB devices",
		Long: `Lists the devices dom0 exposes (PCI and USB from sysfs, block devices from
/sys/block and udev), attaches them to running qubes through libvirt and
keeps assignments (auto-attach, ask-to-attach, required) in qubes.xml.
Without a subcommand lists the devices of the class.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if listClasses {
				for _, c := range devices.Classes() {
					fmt.Fprintln(env.IO.Out, c)
				}
				return nil
			}
			if len(args) == 0 {
				return usagef("the following arguments are required: DEVICE_CLASS")
			}
			return usagef("no such device class: %s", args[0])
		},
	}
	cmd.Flags().BoolVar(&listClasses, "list-device-classes", false, "list device classes")
	cmd.Flags().BoolVar(&listClasses, "list-classes", false, "list device classes")
	_ = cmd.Flags().MarkHidden("list-classes")
	cmd.PersistentFlags().String("sysfs-root", "/sys", "sysfs root to discover devices in (env QVM_SYSFS_ROOT)")
	_ = env.cfg.BindPFlag("sysfs-root", cmd.PersistentFlags().Lookup("sysfs-root"))
	for _, class := range devices.Classes() {
		cmd.AddCommand(newDeviceClassCmd(env, class))
	}
	return cmd
}

func newDeviceClassCmd(env *Env, class string) *cobra.Command {
	lo := &deviceListOptions{}
	cmd := &cobra.Command{
		Use:   class + " [list|attach|detach|assign|unassign|info] ...",
		Short: "Manage " + class + " devices",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("argument command: invalid choice: '%s'", args[0])
			}
			return runDeviceList(cmd.Context(), env, class, lo, nil)
		},
	}
	lo.addFlags(env, cmd)
	cmd.AddCommand(newDeviceListCmd(env, class), newDeviceAttachCmd(env, class), newDeviceDetachCmd(env, class),
		newDeviceAssignCmd(env, class), newDeviceUnassignCmd(env, class), newDeviceInfoCmd(env, class))
	return cmd
}

type deviceListOptions struct {
	assignments bool
	sbdf        bool
	format      string
	sel         vmSelection
}

func (o *deviceListOptions) addFlags(env *Env, cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&o.assignments, "assignments", "s", false, "include assignments (marked *)")
	cmd.Flags().BoolVar(&o.sbdf, "with-sbdf", false, "show the PCI SBDF column (pci)")
	cmd.Flags().BoolVar(&o.sbdf, "resolve-paths", false, "same as --with-sbdf")
	cmd.Flags().StringVar(&o.format, "format", "table", "output format: table or json")
	_ = cmd.Flags().MarkHidden("resolve-paths")
	o.sel.withDom0 = true // --all includes dom0, the backend of every device here
	o.sel.addFlags(env, cmd)
}

func newDeviceListCmd(env *Env, class string) *cobra.Command {
	lo := &deviceListOptions{}
	cmd := &cobra.Command{
		Use: "list [-s] [--with-sbdf] [--all [--exclude VM]... | VMNAME...]", Aliases: []string{"ls", "l"},
		Short: "List devices, who has them attached and (with -s) assigned",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeviceList(cmd.Context(), env, class, lo, args)
		},
		ValidArgsFunction: completeVMs(env, nil),
	}
	lo.addFlags(env, cmd)
	return cmd
}

// deviceRequest carries the options shared by attach and assign.
type deviceRequest struct {
	opts     []string
	ro       bool
	persist  bool
	ask      bool
	required bool
	port     bool
	device   bool
}

func (r *deviceRequest) optionFlags(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&r.opts, "option", "o", nil, "device option KEY=VALUE (repeatable)")
	cmd.Flags().BoolVar(&r.ro, "ro", false, "attach read-only (read-only=yes)")
}

func newDeviceAttachCmd(env *Env, class string) *cobra.Command {
	r := &deviceRequest{}
	cmd := &cobra.Command{
		Use: "attach [-o K=V]... [--ro] [-p] VMNAME BACKEND:PORT[:DEVID]", Aliases: []string{"at", "a"},
		Short: "Attach a device to a running qube now (not stored; -p also assigns it as required)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("the following arguments are required: VMNAME, DEVICE")
			}
			return runDeviceAttach(cmd.Context(), env, class, r, args[0], args[1])
		},
		ValidArgsFunction: completeDeviceArgs(env, class, "exposed"),
	}
	r.optionFlags(cmd)
	cmd.Flags().BoolVarP(&r.persist, "persistent", "p", false, "also assign the device as required")
	return cmd
}

func newDeviceDetachCmd(env *Env, class string) *cobra.Command {
	cmd := &cobra.Command{
		Use: "detach VMNAME [BACKEND:PORT[:DEVID]]", Aliases: []string{"dt", "d"},
		Short: "Detach one device, or all devices of the class, from a running qube",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("the following arguments are required: VMNAME")
			}
			dev := ""
			if len(args) == 2 {
				dev = args[1]
			}
			return runDeviceDetach(cmd.Context(), env, class, args[0], dev)
		},
		ValidArgsFunction: completeDeviceArgs(env, class, "attached"),
	}
	return cmd
}

func newDeviceAssignCmd(env *Env, class string) *cobra.Command {
	r := &deviceRequest{}
	cmd := &cobra.Command{
		Use:   "assign [-o K=V]... [--ro] [--ask | --required] [--port | --device] VMNAME BACKEND:PORT[:DEVID]",
		Short: "Assign a device to a qube (stored in qubes.xml; auto-attach by default)", Aliases: []string{"s"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("the following arguments are required: VMNAME, DEVICE")
			}
			return runDeviceAssign(cmd.Context(), env, class, r, args[0], args[1])
		},
		ValidArgsFunction: completeDeviceArgs(env, class, "exposed"),
	}
	r.optionFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&r.ask, "ask", false, "ask before attaching (ask-to-attach)")
	f.BoolVar(&r.ask, "ask-to-attach", false, "same as --ask")
	f.BoolVarP(&r.required, "required", "r", false, "the qube needs the device to start (required)")
	f.BoolVar(&r.port, "port", false, "any device in that port (device id *)")
	f.BoolVar(&r.port, "only-port", false, "same as --port")
	f.BoolVar(&r.device, "device", false, "that device in any port (port *)")
	f.BoolVar(&r.device, "only-device", false, "same as --device")
	cmd.MarkFlagsMutuallyExclusive("ask", "required")
	cmd.MarkFlagsMutuallyExclusive("port", "device")
	return cmd
}

func newDeviceUnassignCmd(env *Env, class string) *cobra.Command {
	r := &deviceRequest{}
	cmd := &cobra.Command{
		Use: "unassign [--port | --device] VMNAME [BACKEND:PORT[:DEVID]]", Aliases: []string{"u"},
		Short: "Remove one assignment, or all of the class, from a qube",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("the following arguments are required: VMNAME")
			}
			dev := ""
			if len(args) == 2 {
				dev = args[1]
			}
			return runDeviceUnassign(cmd.Context(), env, class, r, args[0], dev)
		},
		ValidArgsFunction: completeDeviceArgs(env, class, "assigned"),
	}
	f := cmd.Flags()
	f.BoolVar(&r.port, "port", false, "the assignment of any device in that port")
	f.BoolVar(&r.port, "only-port", false, "same as --port")
	f.BoolVar(&r.device, "device", false, "the assignment of that device in any port")
	f.BoolVar(&r.device, "only-device", false, "same as --device")
	cmd.MarkFlagsMutuallyExclusive("port", "device")
	return cmd
}

func newDeviceInfoCmd(env *Env, class string) *cobra.Command {
	return &cobra.Command{
		Use: "info BACKEND:PORT", Aliases: []string{"i"},
		Short: "Show a device's description, device id and details",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("the following arguments are required: DEVICE")
			}
			return runDeviceInfo(cmd.Context(), env, class, args[0])
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return deviceCompletions(env, class, "exposed", ""), cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// deviceEnv is what the device subcommands work with.
type deviceEnv struct {
	disc  *devices.Discoverer
	hv    devices.Hypervisor
	close func()
}

func (env *Env) deviceEnv(ctx context.Context, _ string) (*deviceEnv, error) {
	hv, closeFn, err := env.deviceHypervisor(ctx)
	if err != nil {
		return nil, err
	}
	return &deviceEnv{disc: env.discoverer(), hv: hv, close: closeFn}, nil
}

// discoverer reads dom0's devices under --sysfs-root (the ids files are
// read only when a name is looked up).
func (env *Env) discoverer() *devices.Discoverer {
	return &devices.Discoverer{Sys: env.sysfs(),
		PCIIDs: devices.LoadIDs(devices.PCIIDsPaths), USBIDs: devices.LoadIDs(devices.USBIDsPaths)}
}

// sysfs is dom0's /sys, or --sysfs-root.
func (env *Env) sysfs() devices.SysFS {
	root := env.cfg.GetString("sysfs-root")
	if root == "" {
		root = "/sys"
	}
	return devices.SysFS{Root: root}
}

func (de *deviceEnv) manager(app *core.App) *devices.Manager {
	m := &devices.Manager{App: app, Disc: de.disc, HV: de.hv}
	if v, ok := app.Dom0().Feature("suspend-s0ix"); ok && v != "" {
		m.S0ix = true
	}
	return m
}

// deviceErr turns the package's refusals into the stock "Error: <msg>"
// (exit 1) and malformed device arguments into usage errors (exit 2).
func deviceErr(err error) error {
	var de *devices.Error
	var ae *devices.ArgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return &UsageError{Msg: ae.Msg}
	case errors.As(err, &de):
		return &ExitError{Code: 1, Msg: "Error: " + de.Msg, Raw: true}
	}
	return err
}

// resolveDevice parses BACKEND:PORT[:DEVID], checks the backend exists and,
// when need is set, that it exposes the port (returning that device).
func resolveDevice(app *core.App, disc *devices.Discoverer, class, arg string, need bool) (devices.VirtualDevice, *devices.Device, error) {
	v, err := devices.ParseDeviceArg(class, arg)
	if err != nil {
		return v, nil, err
	}
	if _, err := app.Domain(v.Backend); err != nil {
		return v, nil, &ExitError{Code: 1, Msg: "no such backend vm!"}
	}
	var dev *devices.Device
	if v.Backend == devices.Backend && v.ID != devices.Any {
		dev, _ = disc.Lookup(class, v.ID)
	}
	if need && dev == nil {
		return v, nil, &ExitError{Code: 1, Msg: fmt.Sprintf("backend vm %s doesn't expose %s device '%s'", v.Backend, class, v.ID)}
	}
	return v, dev, nil
}

type deviceRow struct {
	port, devid, desc, sbdf string
	users                   []string
	json                    deviceJSON
}

// deviceJSON is one row of list --format json: the same rows as the table.
type deviceJSON struct {
	Backend     string           `json:"backend"`
	Port        string           `json:"port"`
	DeviceID    string           `json:"device_id"`
	Description string           `json:"description"`
	SBDF        string           `json:"sbdf,omitempty"`
	AttachedTo  []string         `json:"attached_to"`
	Assigned    []assignmentJSON `json:"assigned,omitempty"`
}

type assignmentJSON struct {
	VM      string            `json:"vm"`
	Mode    string            `json:"mode"`
	Options map[string]string `json:"options"`
}

func runDeviceList(ctx context.Context, env *Env, class string, o *deviceListOptions, args []string) error {
	if o.sbdf && class != devices.PCI {
		return usagef("--with-sbdf is only for pci devices")
	}
	if o.format != "table" && o.format != "json" {
		return usagef("argument --format: invalid choice: '%s' (choose from 'table', 'json')", o.format)
	}
	de, err := env.deviceEnv(ctx, class)
	if err != nil {
		return err
	}
	defer de.close()
	return deviceErr(env.view(ctx, func(app *core.App) error {
		devices.MigratePCIPorts(app, de.disc.Sys)
		var sel map[string]bool
		if len(args) > 0 || o.sel.all {
			doms, err := o.sel.resolve(app, args)
			if err != nil {
				return err
			}
			sel = map[string]bool{}
			for _, d := range doms {
				sel[d.Name()] = true
			}
		}
		ds, err := de.disc.List(class)
		if err != nil {
			return err
		}
		m := de.manager(app)
		rows := map[string]*deviceRow{}
		var order []string
		row := func(port, devid string) *deviceRow {
			k := port + "\x00" + devid
			if r, ok := rows[k]; ok {
				return r
			}
			r := &deviceRow{port: port, devid: devid}
			rows[k] = r
			order = append(order, k)
			return r
		}
		byPort := map[string]*devices.Device{}
		for _, d := range ds {
			r := row(d.Port.String(), d.DeviceID)
			r.desc = d.Description()
			r.sbdf = sbdfOf(d)
			byPort[d.Port.String()] = d
		}
		atts, err := m.Attachments(ctx, class)
		if err != nil {
			// the listing is still useful without the hypervisor's answer
			env.warnf(env.progFor("qvm device "+class+" list"), "attachments unknown: %v", err)
		}
		related := map[*deviceRow]bool{}
		for _, a := range atts {
			devid, desc := devices.Any, "unknown device"
			if d := byPort[a.Port.String()]; d != nil {
				devid, desc = d.DeviceID, d.Description()
			}
			r := row(a.Port.String(), devid)
			if r.desc == "" {
				r.desc = desc
			}
			r.users = append(r.users, a.VM+" (attached)")
			r.json.AttachedTo = append(r.json.AttachedTo, a.VM)
			if sel[a.VM] {
				related[r] = true
			}
		}
		if o.assignments {
			for _, d := range app.Domains() {
				for _, a := range devices.Assignments(d, class) {
					r := row(a.Port.String(), a.DeviceID)
					if r.desc == "" {
						r.desc = a.DeviceID
						if a.DeviceID == devices.Any {
							r.desc = "any device"
						}
						if dev := byPort[a.Port.String()]; dev != nil {
							r.sbdf = sbdfOf(dev)
						}
					}
					u := "*" + d.Name() + " (" + a.Mode
					if len(a.Options) > 0 {
						u += ": " + devices.FormatOptions(a.Options)
					}
					r.users = append(r.users, u+")")
					aj := assignmentJSON{VM: d.Name(), Mode: a.Mode, Options: map[string]string{}}
					for _, o := range a.Options {
						aj.Options[o.Key] = o.Value
					}
					r.json.Assigned = append(r.json.Assigned, aj)
					if sel[d.Name()] {
						related[r] = true
					}
				}
			}
		}
		sort.SliceStable(order, func(i, j int) bool { return order[i] < order[j] })
		if o.format == "json" {
			out := []deviceJSON{}
			for _, k := range order {
				r := rows[k]
				backend, port, _ := strings.Cut(r.port, ":")
				if sel != nil && !sel[backend] && !related[r] {
					continue
				}
				j := r.json
				j.Backend, j.Port, j.DeviceID, j.Description, j.SBDF = backend, port, r.devid, r.desc, r.sbdf
				if j.AttachedTo == nil {
					j.AttachedTo = []string{}
				}
				out = append(out, j)
			}
			return writeJSON(env.IO.Out, out)
		}
		var table [][]string
		if env.IO.IsTTY {
			h := []string{"BACKEND:DEVID", "DESCRIPTION", "USED BY"}
			if o.sbdf {
				h = []string{"BACKEND:DEVID", "SBDF", "DESCRIPTION", "USED BY"}
			}
			table = append(table, h)
		}
		for _, k := range order {
			r := rows[k]
			backend, _, _ := strings.Cut(r.port, ":")
			if sel != nil && !sel[backend] && !related[r] {
				continue
			}
			line := []string{r.port, r.desc, strings.Join(r.users, ", ")}
			if o.sbdf {
				line = []string{r.port, r.sbdf, r.desc, strings.Join(r.users, ", ")}
			}
			table = append(table, line)
		}
		printTable(env.IO.Out, table)
		return nil
	}))
}

func sbdfOf(d *devices.Device) string {
	for _, kv := range d.Extra {
		if kv.Key == "sbdf" {
			return kv.Value
		}
	}
	return ""
}

// parseDeviceOptions reads -o K=V and --ro; "ro" is normalised to
// read-only=yes/no and --ro wins over it.
func parseDeviceOptions(r *deviceRequest) ([]core.Opt, error) {
	var out []core.Opt
	for _, kv := range r.opts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("option %q is not KEY=VALUE", kv)
		}
		if k == "ro" {
			b, err := core.ParseBool(v)
			if err != nil {
				return nil, usagef("invalid value for ro option: %q (use true or false)", v)
			}
			k, v = "read-only", "no"
			if b {
				v = "yes"
			}
		}
		out = append(out, core.Opt{Key: k, Value: v})
	}
	if r.ro {
		kept := out[:0]
		for _, o := range out {
			if o.Key != "read-only" {
				kept = append(kept, o)
			}
		}
		out = append(kept, core.Opt{Key: "read-only", Value: "yes"})
	}
	return out, nil
}

func runDeviceAttach(ctx context.Context, env *Env, class string, r *deviceRequest, vmName, arg string) error {
	opts, err := parseDeviceOptions(r)
	if err != nil {
		return err
	}
	if class == devices.PCI && !r.persist {
		return deviceErr(&devices.Error{Msg: "PCI devices cannot be attached manually, did you mean 'qvm-pci assign --required ...'"})
	}
	de, err := env.deviceEnv(ctx, class)
	if err != nil {
		return err
	}
	defer de.close()
	var attachErr error
	err = env.view(ctx, func(app *core.App) error {
		vm, err := oneVM(app, vmName)
		if err != nil {
			return err
		}
		m := de.manager(app)
		if class == devices.Block && strings.Contains(arg, ":/") {
			arg, err = attachFilePrep(ctx, m, vm, arg, r.ro || hasOpt(opts, "read-only", "yes"))
			if err != nil {
				return err
			}
		}
		v, dev, err := resolveDevice(app, de.disc, class, arg, true)
		if err != nil {
			return err
		}
		if v.DeviceID != "" && v.DeviceID != devices.Any && v.DeviceID != dev.DeviceID {
			return &devices.Error{Msg: fmt.Sprintf("backend vm %s doesn't expose %s device '%s' with id %s", v.Backend, class, v.ID, v.DeviceID)}
		}
		attachErr = m.Attach(ctx, vm, dev, opts)
		return nil
	})
	if err != nil {
		return deviceErr(err)
	}
	if !r.persist {
		return deviceErr(attachErr)
	}
	// -p: the attach may fail (qube halted); the assignment is what counts.
	ar := *r
	ar.required, ar.ask, ar.port, ar.device = true, false, false, false
	return runDeviceAssign(ctx, env, class, &ar, vmName, arg)
}

func hasOpt(opts []core.Opt, k, v string) bool {
	for _, o := range opts {
		if o.Key == k && o.Value == v {
			return true
		}
	}
	return false
}

// attachFilePrep turns dom0:/path/to/file into a loop device (losetup as
// root, as the stock qvm-start --cdrom does) once the qube is known to
// run, and returns dom0:loopN.
func attachFilePrep(ctx context.Context, m *devices.Manager, vm *core.Domain, arg string, ro bool) (string, error) {
	backend, path, _ := strings.Cut(arg, ":")
	if backend != devices.Backend {
		return "", &devices.Error{Msg: "only files of dom0 can be attached by path"}
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return "", &devices.Error{Msg: fmt.Sprintf("file path must be absolute and clean: %s", path)}
	}
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return "", &devices.Error{Msg: fmt.Sprintf("not a regular file: %s", path)}
	}
	if ok, err := m.IsRunning(ctx, vm.Name()); err != nil {
		return "", err
	} else if !ok {
		return "", &devices.Error{Msg: "VM not running, cannot attach device, do you mean 'assign'?"}
	}
	args := []string{"-f", "--show"}
	if ro {
		args = append(args, "-r")
	}
	out, err := exec.CommandContext(ctx, "losetup", append(args, path)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %s", path, strings.TrimSpace(string(out)))
	}
	return "dom0:" + filepath.Base(strings.TrimSpace(string(out))), nil
}

func runDeviceDetach(ctx context.Context, env *Env, class, vmName, arg string) error {
	de, err := env.deviceEnv(ctx, class)
	if err != nil {
		return err
	}
	defer de.close()
	return deviceErr(env.view(ctx, func(app *core.App) error {
		vm, err := oneVM(app, vmName)
		if err != nil {
			return err
		}
		m := de.manager(app)
		if arg == "" {
			atts, err := m.Attachments(ctx, class)
			if err != nil {
				return err
			}
			for _, a := range atts {
				if a.VM == vm.Name() {
					if err := m.Detach(ctx, vm, a.Port); err != nil {
						return err
					}
				}
			}
			return nil
		}
		v, err := devices.ParseDeviceArg(class, arg)
		if err != nil {
			return err
		}
		if _, err := app.Domain(v.Backend); err != nil {
			return &ExitError{Code: 1, Msg: "no such backend vm!"}
		}
		atts, err := m.Attachments(ctx, class)
		if err != nil {
			return err
		}
		for _, a := range atts {
			if a.VM == vm.Name() && a.Port == v.Port {
				return m.Detach(ctx, vm, v.Port)
			}
		}
		if _, ok := de.disc.Lookup(class, v.ID); !ok || v.Backend != devices.Backend {
			return &devices.Error{Msg: v.Port.String() + " not found."}
		}
		return &devices.Error{Msg: v.Port.String() + " is not attached."}
	}))
}

func runDeviceAssign(ctx context.Context, env *Env, class string, r *deviceRequest, vmName, arg string) error {
	opts, err := parseDeviceOptions(r)
	if err != nil {
		return err
	}
	mode := devices.AutoAttach
	switch {
	case r.required:
		mode = devices.Required
	case r.ask:
		mode = devices.AskToAttach
	}
	if class == devices.PCI && mode != devices.Required {
		return deviceErr(&devices.Error{Msg: "PCI devices cannot be assigned as not required."})
	}
	if opts, err = devices.CheckOptions(class, opts); err != nil {
		return deviceErr(err)
	}
	de, err := env.deviceEnv(ctx, class)
	if err != nil {
		return err
	}
	defer de.close()
	var hint, warn []string
	err = env.update(ctx, func(app *core.App) error {
		devices.MigratePCIPorts(app, de.disc.Sys)
		vm, err := oneVM(app, vmName)
		if err != nil {
			return err
		}
		v0, err := devices.ParseDeviceArg(class, arg)
		if err != nil {
			return err
		}
		need := v0.DeviceID == "" && !r.port && !r.device && v0.ID != devices.Any
		v, dev, err := resolveDevice(app, de.disc, class, arg, need)
		if err != nil {
			return err
		}
		if v.DeviceID == "" {
			v.DeviceID = devices.Any
			if dev != nil {
				v.DeviceID = dev.DeviceID
			}
		}
		if r.port {
			v.DeviceID = devices.Any
		}
		if r.device {
			if v.DeviceID == devices.Any {
				return &devices.Error{Msg: fmt.Sprintf("backend vm %s doesn't expose %s device '%s'", v.Backend, class, v.ID)}
			}
			v.ID = devices.Any
		}
		a := &devices.Assignment{VirtualDevice: v, Mode: mode, Options: opts}
		if err := devices.Assign(app, vm, a); err != nil {
			return err
		}
		if dev != nil && devices.DeniedInterface(app, vm, dev) != "" {
			warn = append(warn, "Warning: The assigned device is on the denied list.",
				"Auto-attach will not work; the device can only be attached with 'qvm-"+class+" attach'.")
		}
		m := de.manager(app)
		if running, err := m.IsRunning(ctx, vm.Name()); err == nil && running && class != devices.PCI {
			line := "\tqvm-" + class + " attach"
			for _, o := range opts {
				line += " -o " + o.Key + "=" + o.Value
			}
			port := v.Port.String()
			if v.ID == devices.Any && dev != nil {
				port = dev.Port.String()
			}
			hint = append(hint, "Assigned. To attach you can now restart domain or run: ", line+" "+vm.Name()+" "+port)
		}
		return nil
	})
	if err != nil {
		return deviceErr(err)
	}
	for _, l := range append(warn, hint...) {
		fmt.Fprintln(env.IO.Out, l)
	}
	return nil
}

func runDeviceUnassign(ctx context.Context, env *Env, class string, r *deviceRequest, vmName, arg string) error {
	de, err := env.deviceEnv(ctx, class)
	if err != nil {
		return err
	}
	defer de.close()
	var still []string
	err = env.update(ctx, func(app *core.App) error {
		devices.MigratePCIPorts(app, de.disc.Sys)
		vm, err := oneVM(app, vmName)
		if err != nil {
			return err
		}
		var removed []*devices.Assignment
		if arg == "" {
			removed = devices.UnassignAll(vm, class)
		} else {
			v, dev, err := resolveDevice(app, de.disc, class, arg, false)
			if err != nil {
				return err
			}
			switch {
			case r.port:
				v.DeviceID = devices.Any
			case r.device:
				if v.DeviceID == "" && dev != nil {
					v.DeviceID = dev.DeviceID
				}
				v.ID = devices.Any
			case v.DeviceID == "":
				v.DeviceID = uniqueAssignedID(vm, v, dev)
			}
			if v.DeviceID == "" {
				return &devices.Error{Msg: fmt.Sprintf("backend vm %s doesn't expose %s device '%s'", v.Backend, class, v.ID)}
			}
			if err := devices.Unassign(vm, v); err != nil {
				return err
			}
			removed = []*devices.Assignment{{VirtualDevice: v}}
		}
		m := de.manager(app)
		atts, err := m.Attachments(ctx, class)
		if err != nil {
			return err
		}
		for _, a := range atts {
			if a.VM != vm.Name() {
				continue
			}
			for _, rm := range removed {
				if rm.Backend == a.Backend && (rm.ID == devices.Any || rm.ID == a.ID) {
					still = append(still, a.Port.String())
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return deviceErr(err)
	}
	if len(still) > 0 {
		fmt.Fprintln(env.IO.Out, "Unassigned. To detach you can now restart domain or run: ")
		for _, p := range still {
			fmt.Fprintf(env.IO.Out, "\tqvm-%s detach %s %s\n", class, vmName, p)
		}
	}
	return nil
}

// uniqueAssignedID picks the device id for BACKEND:PORT without one: the
// present device's, else the only assignment on that port.
func uniqueAssignedID(vm *core.Domain, v devices.VirtualDevice, dev *devices.Device) string {
	if dev != nil {
		return dev.DeviceID
	}
	found := ""
	for _, a := range devices.Assignments(vm, v.Class) {
		if a.Backend == v.Backend && a.ID == v.ID {
			if found != "" {
				return ""
			}
			found = a.DeviceID
		}
	}
	return found
}

func runDeviceInfo(ctx context.Context, env *Env, class, arg string) error {
	de, err := env.deviceEnv(ctx, class)
	if err != nil {
		return err
	}
	defer de.close()
	return deviceErr(env.view(ctx, func(app *core.App) error {
		_, dev, err := resolveDevice(app, de.disc, class, arg, true)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.IO.Out, dev.Description())
		fmt.Fprintln(env.IO.Out, "device ID: "+dev.DeviceID)
		for _, kv := range dev.Extra {
			fmt.Fprintf(env.IO.Out, "%s: %s\n", strings.ReplaceAll(kv.Key, "_", " "), kv.Value)
		}
		return nil
	}))
}

// completeDeviceArgs completes VMNAME first, then device ids: exposed
// devices, those attached to the qube, or its assignments.
func completeDeviceArgs(env *Env, class, what string) completeFunc {
	return func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
		switch len(args) {
		case 0:
			return completeVMs(env, nil)(cmd, args, s)
		case 1:
			return deviceCompletions(env, class, what, args[0]), cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

func deviceCompletions(env *Env, class, what, vmName string) []string {
	_ = env.loadConfig()
	de, err := env.deviceEnv(context.Background(), class)
	if err != nil {
		return nil
	}
	defer de.close()
	var out []string
	completionState(env, func(app *core.App) {
		switch what {
		case "assigned":
			if vm, err := app.Domain(vmName); err == nil {
				for _, a := range devices.Assignments(vm, class) {
					out = append(out, a.VirtualDevice.String())
				}
			}
		case "attached":
			atts, _ := de.manager(app).Attachments(context.Background(), class)
			for _, a := range atts {
				if a.VM == vmName {
					out = append(out, a.Port.String())
				}
			}
		default:
			ds, _ := de.disc.List(class)
			for _, d := range ds {
				out = append(out, d.Port.String())
			}
		}
	})
	return out
}
