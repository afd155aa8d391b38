package core

import (
	"net/netip"
	"sort"
	"strings"
)

// Classes lists the registered qube classes.
var classNames = []string{"AdminVM", "AppVM", "DispVM", "RemoteVM", "StandaloneVM", "TemplateVM"}

// Classes returns the class names a user can create or find in qubes.xml.
func Classes() []string { return append([]string(nil), classNames...) }

// classTables is immutable after init: the property set of each class.
var classTables map[string]*propTable

func init() { classTables = buildTables(); globalTable = buildGlobals() }

func vmRef(name string, stage int, help string, def func(*App, *Domain) (Value, error)) *Prop {
	return &Prop{Name: name, Stage: stage, Kind: KVM, Help: help, def: def}
}

func buildTables() map[string]*propTable {
	base := newTable(
		&Prop{Name: "name", Stage: 2, Kind: KStr, WriteOnce: true, NoClone: true, Help: "User-assigned name of the qube."},
		&Prop{Name: "qid", Stage: 2, Kind: KInt, WriteOnce: true, NoClone: true, Help: "Internal, persistent identificator of particular domain.",
			check: func(_ *App, _ *Domain, v Value) (Value, error) {
				if n := v.Int(); n < 0 || n > MaxQID {
					return v, valueErrorf("qid value must be between 0 and qubes.config.max_qid")
				}
				return v, nil
			}},
		&Prop{Name: "uuid", Stage: 2, Kind: KUUID, WriteOnce: true, NoClone: true, Help: "UUID from libvirt."},
		&Prop{Name: "label", Stage: 2, Kind: KLabel, Help: "Colourful label assigned to VM. This is where the colour of the padlock is set."},
		&Prop{Name: "klass", Stateless: true, Kind: KStr, Help: "Class of the qube.",
			def: func(_ *App, d *Domain) (Value, error) { return str(d.Class), nil }},
		&Prop{Name: "icon", Stateless: true, Kind: KStr, Help: "freedesktop icon name, suitable for use in PyQt4.QtGui.QIcon.fromTheme()",
			def: func(a *App, d *Domain) (Value, error) { return a.icon(d), nil }},
	)

	local := base.with(
		vmRef("default_dispvm", 4, "Default qube to be used as Disposable VM for service calls.", fromGlobal("default_dispvm")),
		&Prop{Name: "devices_denied", Stage: 2, Kind: KStr, Help: "List of device interface codes that cannot be attached to this qube.",
			def: constant(str("")), check: checkDevicesDenied},
		&Prop{Name: "include_in_backups", Stage: 2, Kind: KBool, Help: "If this domain is to be included in default backup.",
			def: constant(boolValue(true))},
		&Prop{Name: "keyboard_layout", Stage: 2, Kind: KStr, Help: "Keyboard layout for this VM",
			def: defaultKeyboardLayout, check: checkKeyboardLayout},
	)
	local.byName["default_dispvm"].check = dispvmRule("default_dispvm")

	qubesVM := local.with(
		vmRef("audiovm", 4, "VM used for Audio", fromGlobal("default_audiovm")),
		&Prop{Name: "autostart", Stage: 2, Kind: KBool, Help: "Setting this to `True` means that VM should be autostarted on dom0 boot.", def: constant(boolValue(false))},
		&Prop{Name: "backup_timestamp", Stage: 2, Kind: KInt, Help: "Time of last backup of the qube, in seconds since unix epoch", def: constant(none)},
		&Prop{Name: "bootmode", Stage: 4, Kind: KStr, Help: "Boot mode of the qube (kernel options set by the boot-mode.* features).", def: (*App).defaultBootmode},
		&Prop{Name: "debug", Stage: 2, Kind: KBool, Help: "Turns on debugging features.", def: constant(boolValue(false))},
		&Prop{Name: "default_user", Stage: 2, Kind: KStr, Help: "Default user used to run commands in the qube.",
			def: fromTemplate("default_user", constant(str("user"))),
			check: func(_ *App, _ *Domain, v Value) (Value, error) {
				if !reUser.MatchString(v.S) {
					return v, valueErrorf("Username can contain only those characters: a-z, A-Z, 0-9, '+,.-_'")
				}
				return v, nil
			}},
		vmRef("guivm", 4, "VM used for GUI", fromGlobal("default_guivm")),
		&Prop{Name: "installed_by_rpm", Stage: 2, Kind: KBool, Help: "If this domain's image was installed from package tracked by package manager.", def: constant(boolValue(false))},
		&Prop{Name: "ip", Stage: 2, Kind: KIPv4, Help: "IP address of this domain.", def: defaultIP},
		&Prop{Name: "ip6", Stage: 2, Kind: KIPv6, Help: "IPv6 address of this domain.", def: defaultIP6},
		&Prop{Name: "kernel", Stage: 2, Kind: KStr, Help: "Kernel used by this domain.",
			def: fromTemplate("kernel", fromGlobal("default_kernel")), check: checkKernelProp},
		&Prop{Name: "kernelopts", Stage: 4, Kind: KStr, Help: "Kernel command line passed to domain.",
			def: (*App).defaultKernelopts,
			check: func(_ *App, _ *Domain, v Value) (Value, error) {
				if v.None {
					return str(""), nil
				}
				if len(v.S) > 512 {
					return v, valueErrorf("Kernelopts value too long (512 chars max)")
				}
				return v, nil
			}},
		&Prop{Name: "mac", Stage: 2, Kind: KStr, Help: "MAC address of the NIC emulated inside VM", def: constant(str(defaultMAC)),
			check: func(_ *App, _ *Domain, v Value) (Value, error) {
				v.S = strings.ToLower(v.S)
				if !reMAC.MatchString(v.S) {
					return v, valueErrorf("Invalid MAC address value")
				}
				return v, nil
			}},
		vmRef("management_dispvm", 4, "Default DVM template for Disposable VMs for managing this VM.",
			fromTemplate("management_dispvm", fromGlobal("management_dispvm"))),
		&Prop{Name: "maxmem", Stage: 2, Kind: KInt, Help: "Maximum amount of memory available for this VM (for the purpose of the memory balancer). Set to 0 to disable memory balancing for this qube. Value in MiB.",
			def: (*App).defaultMaxmem,
			check: func(_ *App, _ *Domain, v Value) (Value, error) {
				if v.Int() < 0 {
					return v, valueErrorf("maxmem must be positive or zero")
				}
				return v, nil
			}},
		&Prop{Name: "memory", Stage: 2, Kind: KInt, Help: "Memory currently available for this VM. TemplateBasedVMs use its template's value by default.",
			def: fromTemplate("memory", constant(intValue(400))), check: positive("memory")},
		vmRef("netvm", 4, "VM that provides network connection to this domain. When `None`, machine is disconnected.", fromGlobal("default_netvm")),
		&Prop{Name: "provides_network", Stage: 2, Kind: KBool, Help: "If this domain can act as network provider (formerly known as NetVM or ProxyVM)", def: constant(boolValue(false))},
		&Prop{Name: "qrexec_timeout", Stage: 2, Kind: KInt, Help: "Time in seconds after which qrexec connection attempt is deemed failed.",
			def: fromTemplate("qrexec_timeout", fromGlobal("default_qrexec_timeout")), check: positive("qrexec_timeout")},
		&Prop{Name: "shutdown_timeout", Stage: 2, Kind: KInt, Help: "Time in seconds for shutdown of the VM, after which VM may be forcefully powered off.",
			def: fromTemplate("shutdown_timeout", fromGlobal("default_shutdown_timeout")), check: positive("shutdown_timeout")},
		&Prop{Name: "stubdom_mem", Stage: 2, Kind: KInt, Help: "Memory amount allocated for the stubdom", def: constant(none), check: positive("stubdom_mem")},
		&Prop{Name: "updateable", Stage: 2, Kind: KBool, ReadOnly: true, Help: "True if this machine may be updated on its own.",
			def: func(_ *App, d *Domain) (Value, error) { return boolValue(!d.HasTemplate()), nil }},
		&Prop{Name: "vcpus", Stage: 2, Kind: KInt, Help: "Number of virtual CPUs for a qube",
			def: fromTemplate("vcpus", constant(intValue(2))), check: positive("vcpus")},
		&Prop{Name: "virt_mode", Stage: 2, Kind: KStr, Help: "Virtualisation mode: full virtualisation (\"HVM\"), or paravirtualisation (\"PV\"), or hybrid (\"PVH\"). TemplateBasedVMs use its template's value by default.",
			def: func(a *App, d *Domain) (Value, error) {
				if d.HasPCI() {
					return str("hvm"), nil
				}
				return fromTemplate("virt_mode", constant(str("pvh")))(a, d)
			},
			check: func(_ *App, d *Domain, v Value) (Value, error) {
				v.S = strings.ToLower(v.S)
				switch v.S {
				case "hvm", "pv", "pvh":
				default:
					return v, valueErrorf("Invalid virtualization mode, supported values: hvm, pv, pvh")
				}
				if v.S == "pvh" && d.HasPCI() {
					return v, valueErrorf("pvh mode can't be set if pci devices are assigned")
				}
				return v, nil
			}},
		// Stateless values reported by the reference (runtime ones read as halted here).
		&Prop{Name: "xid", Stateless: true, Kind: KInt, Help: "Xen ID of the domain (-1 when not running).", def: constant(intValue(-1))},
		&Prop{Name: "stubdom_xid", Stateless: true, Kind: KInt, Help: "Xen ID of the stub domain (-1 when none).", def: constant(intValue(-1))},
		&Prop{Name: "start_time", Stateless: true, Kind: KStr, Help: "Time the qube was started (None when halted).", def: constant(none)},
		&Prop{Name: "visible_ip", Stateless: true, Kind: KStr, Help: "IP address of this domain as seen by the domain.",
			def: func(a *App, d *Domain) (Value, error) {
				if v, ok := a.checkWithTemplate(d, "net.fake-ip"); ok {
					return str(v), nil
				}
				return a.Get(d, "ip")
			}},
		&Prop{Name: "visible_ip6", Stateless: true, Kind: KStr, Help: "IPv6 address of this domain as seen by the domain.",
			def: func(a *App, d *Domain) (Value, error) { return a.Get(d, "ip6") }},
		&Prop{Name: "visible_gateway", Stateless: true, Kind: KStr, Help: "Default gateway of this domain as seen by the domain.",
			def: func(a *App, d *Domain) (Value, error) {
				if v, ok := a.checkWithTemplate(d, "net.fake-gateway"); ok {
					return str(v), nil
				}
				if n := a.netvmOf(d); n != nil {
					return a.Get(n, "gateway")
				}
				return none, nil
			}},
		&Prop{Name: "visible_gateway6", Stateless: true, Kind: KStr, Help: "Default (IPv6) gateway of this domain as seen by the domain.",
			def: func(a *App, d *Domain) (Value, error) {
				n := a.netvmOf(d)
				if v, _ := a.checkWithNetvm(d, "ipv6"); n != nil && v != "" {
					return a.Get(n, "gateway6")
				}
				return none, nil
			}},
		&Prop{Name: "visible_netmask", Stateless: true, Kind: KStr, Help: "Netmask as seen by the domain.",
			def: func(a *App, d *Domain) (Value, error) {
				if v, ok := a.checkWithTemplate(d, "net.fake-netmask"); ok {
					return str(v), nil
				}
				if a.netvmOf(d) != nil {
					return str("255.255.255.255"), nil
				}
				return none, nil
			}},
		&Prop{Name: "gateway", Stateless: true, Kind: KStr, Help: "Gateway for other domains that use this domain as netvm.",
			def: func(a *App, d *Domain) (Value, error) {
				if v, _ := a.Get(d, "provides_network"); v.Bool() {
					return a.Get(d, "visible_ip")
				}
				return none, nil
			}},
		&Prop{Name: "gateway6", Stateless: true, Kind: KStr, Help: "Gateway (IPv6) for other domains that use this domain as netvm.",
			def: func(a *App, d *Domain) (Value, error) {
				if v, _ := a.Get(d, "provides_network"); v.Bool() {
					if f, _ := a.checkWithNetvm(d, "ipv6"); f != "" {
						return a.Get(d, "visible_ip6")
					}
				}
				return none, nil
			}},
		&Prop{Name: "dns", Stateless: true, Kind: KStr, Help: "Secondary DNS server set up for this domain.",
			def: func(a *App, d *Domain) (Value, error) {
				if a.networked(d) {
					return str("10.139.1.1 10.139.1.2"), nil
				}
				return none, nil
			}},
	)
	for _, n := range []string{"audiovm", "guivm", "netvm", "management_dispvm"} {
		p := *qubesVM.byName[n]
		qubesVM.add(&p)
	}
	qubesVM.byName["management_dispvm"].check = dispvmRule("management_dispvm")
	qubesVM.byName["netvm"].check = checkNetvm
	qubesVM.byName["netvm"].after = afterNetvm
	qubesVM.byName["guivm"].after = afterTagProp("guivm")
	qubesVM.byName["audiovm"].after = afterTagProp("audiovm")
	qubesVM.byName["provides_network"].check = checkProvidesNetwork
	qubesVM.byName["provides_network"].after = afterProvidesNetwork

	templateForDispvms := &Prop{Name: "template_for_dispvms", Stage: 2, Kind: KBool, Help: "Should this VM be allowed to start as Disposable VM",
		def: constant(boolValue(false)), check: checkTemplateForDispvms}

	appvm := qubesVM.with(
		&Prop{Name: "template", Stage: 4, Kind: KVM, VMClass: "TemplateVM", Help: "Template, on which this domain is based.",
			check: checkTemplateChange, after: afterTemplate},
		templateForDispvms,
	)
	tpl := qubesVM.with(
		&Prop{Name: "appvm_default_bootmode", Stage: 4, Kind: KStr, Help: "Default boot mode for qubes based on this template.",
			def: func(_ *App, d *Domain) (Value, error) {
				if v, ok := d.Feature("boot-mode.appvm-default"); ok {
					return str(v), nil
				}
				return str("default"), nil
			}},
	)
	netvm := *tpl.byName["netvm"]
	netvm.def = constant(none)
	tpl.add(&netvm)
	standalone := qubesVM.with(templateForDispvms)
	disp := qubesVM.with(
		&Prop{Name: "template", Stage: 4, Kind: KVM, Help: "Template, on which this domain is based.",
			check: func(a *App, d *Domain, v Value) (Value, error) {
				if v.None {
					return v, valueErrorf("template for disposable must have template_for_dispvms=True")
				}
				if !a.templateForDispvms(a.byName[v.S]) {
					return v, valueErrorf("template for disposable must have template_for_dispvms=True")
				}
				return checkTemplateChange(a, d, v)
			}, after: afterTemplate},
		&Prop{Name: "dispid", Stage: 2, Kind: KInt, WriteOnce: true, NoClone: true, Help: "Internal, persistent identifier of particular DispVM."},
		&Prop{Name: "auto_cleanup", Stage: 2, Kind: KBool, Help: "automatically remove this VM upon shutdown", def: constant(boolValue(false))},
		&Prop{Name: "is_preload", Stateless: true, Kind: KBool, Help: "Whether this disposable is preloaded.", def: constant(boolValue(false))},
	)
	incl := *disp.byName["include_in_backups"]
	incl.def = func(a *App, d *Domain) (Value, error) {
		v, err := a.Get(d, "auto_cleanup")
		return boolValue(!v.Bool()), err
	}
	disp.add(&incl)
	dd := *disp.byName["default_dispvm"]
	dd.def = func(a *App, d *Domain) (Value, error) { return a.Get(d, "template") }
	disp.add(&dd)

	admin := local.with(
		&Prop{Name: "maxmem", Stage: 2, Kind: KInt, ReadOnly: true, Help: "Memory for dom0 (static-max), MiB.",
			def: func(a *App, _ *Domain) (Value, error) {
				if a.Host.Dom0Max > 0 {
					return intValue(a.Host.Dom0Max), nil
				}
				return intValue(4096), nil
			}},
		&Prop{Name: "updateable", Stage: 2, Kind: KBool, ReadOnly: true, Help: "True if this machine may be updated on its own.", def: constant(boolValue(true))},
	)
	for _, n := range []string{"name", "qid", "uuid"} {
		p := *admin.byName[n]
		p.ReadOnly = true
		switch n {
		case "name":
			p.def = constant(str("dom0"))
		case "qid":
			p.def = constant(intValue(0))
		case "uuid":
			p.def = constant(str("00000000-0000-0000-0000-000000000000"))
		}
		admin.add(&p)
	}
	kb := *admin.byName["keyboard_layout"]
	kb.def = constant(str("us++"))
	admin.add(&kb)

	remote := base.with(
		&Prop{Name: "include_in_backups", Stage: 2, Kind: KBool, Help: "If this domain is to be included in default backup.", def: constant(boolValue(false))},
		vmRef("relayvm", 4, "Relay qube for this remote qube.", constant(none)),
		&Prop{Name: "transport_rpc", Stage: 2, Kind: KStr, Help: "RPC service used to reach the remote qube.", def: constant(none)},
		&Prop{Name: "remote_name", Stage: 2, Kind: KStr, Help: "Name of the qube on the remote side.", def: constant(none)},
	)
	return map[string]*propTable{
		"AdminVM": admin, "AppVM": appvm, "TemplateVM": tpl, "StandaloneVM": standalone,
		"DispVM": disp, "RemoteVM": remote,
	}
}

// Props lists the properties of a qube (d non-nil) or the globals (d nil), sorted by name.
func Props(d *Domain) []*Prop {
	var t *propTable
	if d == nil {
		t = globalTable
	} else {
		t = classTables[d.Class]
	}
	out := append([]*Prop(nil), t.list...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ClassProps lists the property names of a class, sorted (for completion).
func ClassProps(class string) []string {
	t := classTables[class]
	if t == nil {
		return nil
	}
	out := make([]string, 0, len(t.list))
	for _, p := range t.list {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func lookupProp(d *Domain, name string) (*Prop, error) {
	t := globalTable
	if d != nil {
		t = classTables[d.Class]
	}
	if p, ok := t.byName[name]; ok {
		return p, nil
	}
	return nil, &NoSuchPropertyError{Name: name}
}

func defaultIP(a *App, d *Domain) (Value, error) {
	if !a.networked(d) {
		return none, nil
	}
	if d.Class == "DispVM" {
		v, _ := a.Get(d, "dispid")
		return str(ipFromID("10.138", v.Int())), nil
	}
	return str(ipFromID("10.137", int64(d.QID()))), nil
}

func defaultIP6(a *App, d *Domain) (Value, error) {
	if !a.networked(d) {
		return none, nil
	}
	if v, _ := a.checkWithNetvm(d, "ipv6"); v == "" {
		return none, nil
	}
	if d.Class == "DispVM" {
		v, _ := a.Get(d, "dispid")
		return str(sprintf("fd09:24ef:4179::a8a:%x", v.Int())), nil
	}
	return str(sprintf("fd09:24ef:4179::a89:%x", d.QID())), nil
}

func defaultKeyboardLayout(a *App, d *Domain) (Value, error) {
	// Follow guivm while it has no layout of its own; guivm chains can
	// loop (A shows B's GUI and B A's), so stop at a qube seen before.
	seen := map[*Domain]bool{d: true}
	for x := d; ; {
		g, err := a.Get(x, "guivm")
		if err != nil || g.None {
			break
		}
		gd := a.byName[g.S]
		if gd == nil || seen[gd] {
			break
		}
		if v, ok := gd.props["keyboard_layout"]; ok {
			return v, nil
		}
		if gd.Class == "AdminVM" {
			break
		}
		seen[gd] = true
		x = gd
	}
	return str("us++"), nil
}

func checkKeyboardLayout(_ *App, _ *Domain, v Value) (Value, error) {
	parts := strings.Split(v.S, "+")
	if !isPrintableASCII(v.S) || len(parts) != 3 || !reKbdLayout.MatchString(parts[0]) ||
		!reKbdVariant.MatchString(parts[1]) || !reKbdOptions.MatchString(parts[2]) {
		return v, valueErrorf("Invalid keyboard layout provided")
	}
	return v, nil
}

func checkDevicesDenied(_ *App, _ *Domain, v Value) (Value, error) {
	if v.None {
		return str(""), nil
	}
	if len(v.S)%7 != 0 || !reDenied.MatchString(v.S) {
		return v, valueErrorf("Invalid list of denied interfaces: %s", v.S)
	}
	seen := map[string]bool{}
	var codes []string
	for i := 0; i < len(v.S); i += 7 {
		c := v.S[i : i+7]
		if !seen[c] {
			seen[c] = true
			codes = append(codes, c)
		}
	}
	sort.Strings(codes)
	return str(strings.Join(codes, "")), nil
}

func checkKernelProp(a *App, _ *Domain, v Value) (Value, error) {
	if v.None {
		return str(""), nil
	}
	if strings.Contains(v.S, "/") {
		return v, valueErrorf("Kernel name cannot contain '/'")
	}
	if !a.loading {
		if err := a.checkKernel(v.S); err != nil {
			return v, err
		}
	}
	return v, nil
}

func parseIP(kind Kind, s string) (string, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil || (kind == KIPv4 && !addr.Is4()) || (kind == KIPv6 && !addr.Is6()) {
		if kind == KIPv4 {
			return "", valueErrorf("'%s' does not appear to be an IPv4 address", s)
		}
		return "", valueErrorf("'%s' does not appear to be an IPv6 address", s)
	}
	return addr.String(), nil
}

func (a *App) icon(d *Domain) Value {
	l, _ := a.Get(d, "label")
	switch d.Class {
	case "AdminVM":
		return str("adminvm-black")
	case "TemplateVM":
		return str("templatevm-" + l.S)
	case "AppVM":
		if a.templateForDispvms(d) {
			return str("templatevm-" + l.S)
		}
	case "DispVM":
		return str("dispvm-" + l.S)
	case "StandaloneVM":
		return str("standalonevm-" + l.S)
	case "RemoteVM":
		return str("remotevm-" + l.S)
	}
	if s, _ := d.Feature("servicevm"); s != "" {
		return str("servicevm-" + l.S)
	}
	return str("appvm-" + l.S)
}
