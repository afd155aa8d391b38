package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/storage"
)

type startOptions struct {
	sel           vmSelection
	skipIfRunning bool
	dispvm        bool
	drive         string
	hddisk        string
	cdrom         string
	windowsTools  bool
}

// driveSpec is the one drive of --drive/--hddisk/--cdrom, "" for none.
func (o startOptions) driveSpec() string {
	switch {
	case o.drive != "":
		return o.drive
	case o.hddisk != "":
		return "hd:" + o.hddisk
	case o.cdrom != "":
		return "cdrom:" + o.cdrom
	case o.windowsTools:
		return "cdrom:dom0:/usr/lib/qubes/qubes-windows-tools.iso"
	}
	return ""
}

func newStartCmd(env *Env) *cobra.Command {
	o := startOptions{sel: vmSelection{required: true}}
	cmd := &cobra.Command{
		Use:   "start [flags] [--all [--exclude X]... | VMNAME... | --dispvm [TEMPLATE]]",
		Short: "Start qubes",
		Long: `Starts qubes through libvirt: the netvm chain first, then the volumes,
the memory request to qmemmand and the domain. A step that fails undoes the
earlier ones. With --dispvm a new disposable is created from TEMPLATE (default:
the default_dispvm setting), started, and its name printed; it is removed
when it halts.`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runStart(cmd.Context(), env, o, args) },
		ValidArgsFunction: completeVMs(env, func(d *core.Domain) bool { return d.IsQubesVM() }),
	}
	o.sel.addFlags(env, cmd)
	cmd.Flags().BoolVar(&o.skipIfRunning, "skip-if-running", false, "do not fail if the qube is already running")
	cmd.Flags().BoolVar(&o.dispvm, "dispvm", false, "start a new disposable from TEMPLATE (or default_dispvm) and print its name")
	f := cmd.Flags()
	f.StringVar(&o.drive, "drive", "", "attach a block device for this start: [hd:|cdrom:]BACKEND:DEVICE or dom0:/PATH (default cdrom)")
	f.StringVar(&o.hddisk, "hddisk", "", "same as --drive hd:BACKEND:DEVICE")
	f.StringVar(&o.cdrom, "cdrom", "", "same as --drive cdrom:BACKEND:DEVICE")
	f.BoolVar(&o.windowsTools, "install-windows-tools", false, "attach the Windows tools ISO (dom0:/usr/lib/qubes/qubes-windows-tools.iso) as a CD-ROM")
	cmd.MarkFlagsMutuallyExclusive("drive", "hddisk", "cdrom", "install-windows-tools")
	cmd.Flags().String("qemu-domain-type", "", "QEMU/KVM only: kvm or qemu (TCG); default kvm where /dev/kvm works and the CPU has vmx/svm (env QVM_QEMU_DOMAIN_TYPE)")
	_ = env.cfg.BindPFlag("qemu-domain-type", cmd.Flags().Lookup("qemu-domain-type"))
	return cmd
}

// printErr is the stock tools' print_error: "Error: <msg>" on stderr.
func (env *Env) printErr(format string, args ...any) {
	fmt.Fprintf(env.IO.Err, "Error: %s\n", fmt.Sprintf(format, args...))
}

func runStart(ctx context.Context, env *Env, o startOptions, args []string) error {
	env.needVirt = true
	if o.dispvm {
		if len(args) > 1 || o.sel.all {
			return usagef("--dispvm takes at most one TEMPLATE")
		}
		return runStartDispVM(ctx, env, args)
	}
	failed := 0
	err := env.update(ctx, func(app *core.App) error {
		doms, err := o.sel.resolve(app, args)
		if err != nil {
			return err
		}
		var drive *startDrive
		if spec := o.driveSpec(); spec != "" {
			if len(doms) != 1 {
				return usagef("--drive can be used only with one domain")
			}
			if drive, err = parseDrive(app, spec); err != nil {
				return err
			}
		}
		h, err := env.openHV(ctx, app)
		if err != nil {
			return err
		}
		defer h.close()
		if drive != nil && !h.state(doms[0]).Active() {
			disk, detach, err := drive.attach(ctx, h)
			if err != nil {
				env.printErr("Starting qube failed: %s: %s", doms[0].Name(), oneLine(err.Error()))
				return &ExitError{Code: 1}
			}
			h.assigned = map[string][]virt.Disk{doms[0].Name(): {disk}}
			if err := h.start(ctx, doms[0], nil); err != nil {
				detach()
				env.printErr("Starting qube failed: %s: %s", doms[0].Name(), oneLine(err.Error()))
				return &ExitError{Code: 1}
			}
			if strings.HasPrefix(disk.Path, "/dev/loop") && drive.backend == "dom0" && strings.HasPrefix(drive.dev, "/") {
				env.noteLoop(doms[0].Name(), disk.Path) // freed when it stops
			}
			return nil
		}
		for _, d := range doms {
			if h.state(d).Active() {
				if o.skipIfRunning {
					continue
				}
				env.printErr("Starting qube failed: %s: Domain is already running", d.Name())
				failed++
				continue
			}
			if err := h.start(ctx, d, nil); err != nil {
				env.printErr("Starting qube failed: %s: %s", d.Name(), oneLine(err.Error()))
				failed++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if failed > 0 {
		return &ExitError{Code: 1}
	}
	return nil
}

// runStartDispVM creates an auto_cleanup disposable, starts it and prints
// its name; any failure removes it again (DispVM.start's cleanup).
func runStartDispVM(ctx context.Context, env *Env, args []string) error {
	return env.update(ctx, func(app *core.App) error {
		base := ""
		if len(args) == 1 {
			base = args[0]
			if _, err := app.Domain(base); err != nil {
				return &UsageError{Msg: err.Error()}
			}
		} else {
			v, _ := app.Get(nil, "default_dispvm")
			if v.None || v.S == "" {
				return &ExitError{Code: 1, Msg: "Error: no TEMPLATE given and no default_dispvm set", Raw: true}
			}
			base = v.S
		}
		t, _ := app.Domain(base)
		if !app.TemplateForDispvms(t) {
			return &ExitError{Code: 1, Msg: fmt.Sprintf("Error: Refusing to create disposable out of app qube which has template_for_dispvms=False: %s", base), Raw: true}
		}
		label, _ := app.Get(t, "label")
		d, err := app.Create(core.CreateOpts{Class: "DispVM", Label: label.S, Template: base})
		if err != nil {
			return &ExitError{Code: 1, Msg: "Error: " + err.Error(), Raw: true}
		}
		if err := app.Set(d, "auto_cleanup", "True"); err != nil {
			return err
		}
		st := storage.Open(app, env.storageOptions())
		if err := st.Create(ctx, d); err != nil {
			_ = app.Remove(d)
			return &ExitError{Code: 1, Msg: fmt.Sprintf("Error: Starting qube failed: %s: %s", d.Name(), oneLine(err.Error())), Raw: true}
		}
		// On failure nothing is saved: the disposable never existed for
		// others, and its data goes at once.
		discard := func() {
			_ = app.Remove(d)
			if err := st.Remove(ctx, d); err != nil {
				env.warnf(d.Name(), "removing the failed disposable: %v", err)
			}
		}
		h, err := env.openHV(ctx, app)
		if err != nil {
			discard()
			return err
		}
		defer h.close()
		if err := h.start(ctx, d, nil); err != nil {
			// cleanup(force): kill if it got that far, then remove.
			if h.state(d).Active() {
				_ = h.conn.Destroy(ctx, d.Name())
			}
			if h.storageStarted(d) {
				_ = h.st.Stop(ctx, d)
			}
			discard()
			var ue *UsageError
			if errors.As(err, &ue) {
				return err
			}
			return &ExitError{Code: 1, Msg: fmt.Sprintf("Error: Starting qube failed: %s: %s", d.Name(), oneLine(err.Error())), Raw: true}
		}
		fmt.Fprintln(env.IO.Out, d.Name())
		return nil
	})
}
