package core

import "os"

// globalTable holds the app-level properties (qubes-prefs).
var globalTable *propTable

func poolRef(name, help string, def func(*App, *Domain) (Value, error)) *Prop {
	return &Prop{Name: name, Stage: 3, Kind: KStr, Help: help, def: def,
		check: func(a *App, _ *Domain, v Value) (Value, error) {
			if a.Pool(v.S) == nil {
				return v, valueErrorf("No such storage pool: %s", v.S)
			}
			return v, nil
		}}
}

func buildGlobals() *propTable {
	vm := func(name, help string, def func(*App, *Domain) (Value, error)) *Prop {
		return &Prop{Name: name, Stage: 3, Kind: KVM, Help: help, def: def}
	}
	dom0 := func(*App, *Domain) (Value, error) { return str("dom0"), nil }
	t := newTable(
		&Prop{Name: "check_updates_vm", Stage: 3, Kind: KBool, Help: "Check for updates inside qubes", def: constant(boolValue(true))},
		vm("clockvm", "Which VM to use as NTP proxy for updating AdminVM", constant(none)),
		vm("default_audiovm", "Default AudioVM for VMs.", dom0),
		vm("default_dispvm", "Default DispVM base for service calls", constant(none)),
		vm("default_guivm", "Default GuiVM for VMs.", dom0),
		&Prop{Name: "default_kernel", Stage: 3, Kind: KStr, Help: "Which kernel to use when not overriden in VM",
			check: func(a *App, _ *Domain, v Value) (Value, error) {
				if v.None {
					return str(""), nil
				}
				if !a.loading {
					return v, a.checkKernel(v.S)
				}
				return v, nil
			}},
		vm("default_netvm", "Default NetVM for AppVMs. Initial state is `None`, which means that AppVMs are not connected to the Internet.", constant(none)),
		poolRef("default_pool", "Default storage pool", (*App).defaultPool),
		poolRef("default_pool_kernel", "Default storage pool for kernel volumes", fromGlobal("default_pool")),
		poolRef("default_pool_private", "Default storage pool for private volumes", fromGlobal("default_pool")),
		poolRef("default_pool_root", "Default storage pool for root volumes", fromGlobal("default_pool")),
		poolRef("default_pool_volatile", "Default storage pool for volatile volumes", fromGlobal("default_pool")),
		&Prop{Name: "default_qrexec_timeout", Stage: 3, Kind: KInt, Help: "Default time in seconds after which qrexec connection attempt is deemed failed", def: constant(intValue(60))},
		&Prop{Name: "default_shutdown_timeout", Stage: 3, Kind: KInt, Help: "Default time in seconds for VM shutdown to complete", def: constant(intValue(60))},
		&Prop{Name: "default_template", Stage: 3, Kind: KVM, VMClass: "TemplateVM", Help: "Default template for new AppVMs"},
		vm("management_dispvm", "Default DVM template for Disposable VMs for managing other VMs.", constant(none)),
		&Prop{Name: "maxmem", Stage: 3, Kind: KInt, ReadOnly: true, Help: "Maximum memory available on the host, in MiB",
			def: func(a *App, _ *Domain) (Value, error) { return intValue(a.Host.MemMiB), nil }},
		&Prop{Name: "no_cpus", Stage: 3, Kind: KInt, ReadOnly: true, Help: "Number of CPUs on the host",
			def: func(a *App, _ *Domain) (Value, error) { return intValue(int64(a.Host.CPUs)), nil }},
		&Prop{Name: "stats_interval", Stage: 3, Kind: KInt, Help: "Interval in seconds for VM stats reporting (memory, CPU usage)", def: constant(intValue(3))},
		vm("updatevm", "Which VM to use as `yum` proxy for updating AdminVM and TemplateVMs", constant(none)),
	)
	t.byName["default_dispvm"].check = dispvmRule("default_dispvm")
	t.byName["management_dispvm"].check = dispvmRule("management_dispvm")
	t.byName["default_netvm"].check = checkDefaultNetvm
	t.byName["default_guivm"].after = afterDefaultTagProp("guivm")
	t.byName["default_audiovm"].after = afterDefaultTagProp("audiovm")
	t.byName["clockvm"].check = checkClockvm
	t.byName["clockvm"].after = afterClockvm
	return t
}

// defaultPool follows the reference order: a pool named "default"; an
// lvm_thin pool named by DEFAULT_LVM_POOL; a file pool on the state dir.
func (a *App) defaultPool(*Domain) (Value, error) {
	if a.Pool("default") != nil {
		return str("default"), nil
	}
	if env := os.Getenv("DEFAULT_LVM_POOL"); env != "" {
		for _, p := range a.Pools {
			if tp, _ := p.Get("thin_pool"); p.Driver == "lvm_thin" && tp == env {
				return str(p.Name), nil
			}
		}
	}
	for _, p := range a.Pools {
		if dir, _ := p.Get("dir_path"); (p.Driver == "file" || p.Driver == "file-reflink") && (dir == a.StateDir || dir == "/var/lib/qubes") {
			return str(p.Name), nil
		}
	}
	return none, valueErrorf("Cannot determine default storage pool")
}
