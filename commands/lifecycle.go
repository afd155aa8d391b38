package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/storage"
)

// hv is one command's access to the hypervisor and the storage of a loaded
// state: the libvirt connection (held only while the command runs) and the
// power state of every domain, read once.
type hv struct {
	env    *Env
	app    *core.App
	st     *storage.Storage
	conn   *virt.Conn
	states map[string]virt.State
	// assigned: block devices attached at this start (qvm start --drive).
	assigned map[string][]virt.Disk
}

func (env *Env) openHV(ctx context.Context, app *core.App) (*hv, error) {
	conn, err := env.virt(ctx)
	if err != nil {
		return nil, err
	}
	h := &hv{env: env, app: app, st: storage.Open(app, env.storageOptions()), conn: conn}
	if err := h.refresh(ctx); err != nil {
		return nil, err
	}
	app.IsRunning = func(d *core.Domain) bool { return h.state(d).Active() }
	return h, nil
}

// close ends the hv's use of the connection (which stays the process's,
// see Env.virt).
func (h *hv) close() { h.conn = nil }

func (h *hv) refresh(ctx context.Context) error {
	st, err := h.conn.States(ctx)
	if err != nil {
		return err
	}
	h.states = st
	return nil
}

// state is a qube's power state; dom0 always runs.
func (h *hv) state(d *core.Domain) virt.State {
	if d.Class == "AdminVM" {
		return virt.Running
	}
	if s, ok := h.states[d.Name()]; ok {
		return s
	}
	return virt.Halted
}

func (h *hv) setState(d *core.Domain, s virt.State) {
	if s == virt.Halted {
		delete(h.states, d.Name())
	} else {
		h.states[d.Name()] = s
	}
}

// storageStarted: some volume of d has its running marker (the qube's
// storage was started and not yet stopped).
func (h *hv) storageStarted(d *core.Domain) bool {
	if !d.IsQubesVM() {
		return false
	}
	vols, err := h.st.Volumes(d)
	if err != nil {
		return false
	}
	for _, v := range vols {
		if v.Running() {
			return true
		}
	}
	return false
}

// reconcile does what qubesd does on the domain-stopped event, for every
// qube that halted since the last look (storage started, domain gone):
// stop its storage (commit, revisions, volatile removal) and remove an
// auto_cleanup disposable. It returns whether it changed anything.
func (h *hv) reconcile(ctx context.Context) bool {
	changed := false
	for _, d := range h.app.Domains() {
		if h.state(d).Active() || !h.storageStarted(d) {
			continue
		}
		h.afterStop(ctx, d)
		changed = true
	}
	return changed
}

// afterStop: storage stop, then the DispVM's auto-cleanup.
func (h *hv) afterStop(ctx context.Context, d *core.Domain) {
	if err := h.st.Stop(ctx, d); err != nil {
		h.env.warnf(d.Name(), "storage stop failed: %v", err)
	}
	_ = h.conn.Undefine(ctx, d.Name())
	h.env.freeLoops(d.Name())
	if d.Class == "DispVM" {
		if v, _ := h.app.Get(d, "auto_cleanup"); v.Bool() {
			h.removeDisposable(ctx, d)
		}
	}
}

// removeDisposable drops an auto_cleanup disposable from the state; its
// data goes once the state without it is saved (as qvm remove does), so a
// crash in between leaves at worst an orphan directory, never a qube
// without volumes.
func (h *hv) removeDisposable(ctx context.Context, d *core.Domain) {
	if err := h.app.Remove(d); err != nil {
		h.env.warnf(d.Name(), "auto-cleanup failed: %v", err)
		return
	}
	st, env := h.st, h.env
	env.afterCommit = append(env.afterCommit, func() {
		if err := st.Remove(ctx, d); err != nil {
			env.warnf(d.Name(), "auto-cleanup of volumes: %v", err)
		}
	})
}

// committed runs what waits for the state to be saved; after a failed
// save it is dropped.
func (env *Env) committed(err error) error {
	acts := env.afterCommit
	env.afterCommit = nil
	if err == nil {
		for _, a := range acts {
			a()
		}
	}
	return err
}

// runMarkers reports whether any volume-running marker exists: the cheap
// test that decides whether a command needs to reconcile at all.
func (env *Env) runMarkers() bool {
	dir := env.storageOptions().RunDir
	if dir == "" {
		dir = "/var/run/qubes"
	}
	m, _ := filepath.Glob(filepath.Join(dir, "volume-running-*"))
	return len(m) > 0
}

// reconcileNow runs the lazy stop handling under the exclusive lock when
// some qube's storage is marked running. A hypervisor that cannot be
// reached is logged, not fatal: the next command tries again.
func (env *Env) reconcileNow(ctx context.Context) error {
	if env.reconciling || !env.runMarkers() {
		return nil
	}
	st, err := env.Store()
	if err != nil {
		return err
	}
	env.reconciling = true
	defer func() { env.reconciling = false }()
	err = st.Update(ctx, func(app *core.App) error {
		h, err := env.openHV(ctx, app)
		if err != nil {
			env.log.Debug("reconcile skipped", "err", err)
			return nil
		}
		defer h.close()
		h.reconcile(ctx)
		return nil
	})
	return env.committed(err)
}

// logHint is where the hypervisor's log of a failed start is.
func (h *hv) logHint(name string) string {
	if root := virt.EmbedRoot(h.conn.URI); root != "" {
		return filepath.Join(root, "log", "qemu", name+".log")
	}
	switch h.conn.Driver() {
	case "xen":
		return "/var/log/libvirt/libxl/libxl-driver.log"
	case "qemu":
		return "/var/log/libvirt/qemu/" + name + ".log"
	}
	return ""
}

// StartError is a failed start, as qvm start reports it.
type StartError struct {
	Name string
	Err  error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// start runs spec/start.md §2 for d: checks, netvm chain, storage
// verify, memory, storage start, domain created paused, resumed. A failing
// step undoes the earlier ones in reverse. chain guards against netvm loops.
func (h *hv) start(ctx context.Context, d *core.Domain, chain []string) error {
	name := d.Name()
	if d.Class == "AdminVM" {
		return errors.New("Cannot start Dom0 fake domain!")
	}
	if !d.IsQubesVM() {
		return fmt.Errorf("%s is a %s and cannot be started", name, d.Class)
	}
	if h.state(d) != virt.Halted {
		return nil // §2 step 2: not halted means nothing to do
	}
	if slices.Contains(chain, name) {
		return fmt.Errorf("netvm loop: %s", strings.Join(append(chain, name), " -> "))
	}
	// Step 3: a stop that was not yet handled.
	if h.storageStarted(d) {
		h.afterStop(ctx, d)
	}
	if v, ok := d.Feature("prohibit-start"); ok && v != "" {
		return fmt.Errorf("Qube start is prohibited. Rationale: %s", v)
	}
	if d.Tags["backup-restore-in-progress"] {
		return errors.New("Restore of this domain in progress, cannot start")
	}
	if d.Class == "DispVM" {
		t := h.app.Template(d)
		if t == nil || !h.app.TemplateForDispvms(t) {
			tn := ""
			if t != nil {
				tn = t.Name()
			}
			return fmt.Errorf("template for disposable (%s) needs to have template_for_dispvms=True", tn)
		}
	}
	if err := h.disposablesBlock(d); err != nil {
		return err
	}
	if h.env.log != nil {
		h.env.log.Debug("Starting qube " + name)
	}
	// (A) steps: nothing of ours to undo yet but the memory grant.
	if err := h.st.Verify(ctx, d); err != nil {
		return err
	}
	if nv := h.app.Netvm(d); nv != nil && nv.Class != "AdminVM" && !h.state(nv).Active() {
		if err := h.start(ctx, nv, append(chain, name)); err != nil {
			return fmt.Errorf("netvm %s: %w", nv.Name(), err)
		}
	}
	release, err := h.requestMem(ctx, d)
	if err != nil {
		return err
	}
	defer release() // step 16 at the latest
	if err := h.st.Start(ctx, d); err != nil {
		return err
	}
	// (B) steps: stop the storage again on failure.
	domXML, err := h.domainXML(d)
	if err == nil {
		domXML, err = h.withRequiredDevices(d, domXML)
	}
	if err != nil {
		h.stopStorage(ctx, d)
		return err
	}
	if _, err := h.conn.CreatePaused(ctx, domXML); err != nil {
		h.stopStorage(ctx, d)
		return h.libvirtError(d, err)
	}
	h.setState(d, virt.Paused)
	release() // qmemmand may balance again: the domain exists
	// (C) steps: kill; the storage stop follows as for any stop.
	if err := h.conn.Resume(ctx, name); err != nil {
		_ = h.conn.Destroy(ctx, name)
		h.setState(d, virt.Halted)
		h.stopStorage(ctx, d)
		return h.libvirtError(d, err)
	}
	h.setState(d, virt.Running)
	h.autoAttachDevices(ctx, d)
	return nil
}

// requestMem asks qmemmand for d's memory (spec/start.md step 9).
func (h *hv) requestMem(ctx context.Context, d *core.Domain) (func(), error) {
	return h.env.requestMem(ctx, h.app, d)
}

func (h *hv) stopStorage(ctx context.Context, d *core.Domain) {
	if err := h.st.Stop(ctx, d); err != nil {
		h.env.warnf(d.Name(), "storage stop after a failed start: %v", err)
	}
	_ = h.conn.Undefine(ctx, d.Name())
}

func (h *hv) libvirtError(d *core.Domain, err error) error {
	msg := virt.Message(err)
	if strings.Contains(msg, "os type 'hvm'") || strings.Contains(msg, "OS type") {
		if v, _ := h.app.Get(d, "virt_mode"); v.S == "hvm" {
			return errors.New("HVM qubes are not supported on this machine. Check BIOS settings for VT-x/AMD-V extensions.")
		}
	}
	if hint := h.logHint(d.Name()); hint != "" {
		return fmt.Errorf("Start failed: %s, see %s for details", msg, hint)
	}
	return fmt.Errorf("Start failed: %s", msg)
}

// disposablesBlock: a disposable template whose volume has snapshots
// disabled cannot start while one of its disposables runs.
func (h *hv) disposablesBlock(d *core.Domain) error {
	if !h.app.TemplateForDispvms(d) {
		return nil
	}
	disabled := false
	for _, v := range d.Volumes {
		disabled = disabled || (v.RevisionsToKeep == -1 && !v.SnapOnStart && v.SaveOnStop)
	}
	if !disabled {
		return nil
	}
	for _, o := range h.app.Domains() {
		if o.Class == "DispVM" && h.app.Template(o) == d && h.state(o).Active() {
			return fmt.Errorf("Domain is not powered off: %s", o.Name())
		}
	}
	return nil
}

// domainXML renders d for this connection's hypervisor.
func (h *hv) domainXML(d *core.Domain) (string, error) {
	vols, err := h.st.Volumes(d)
	if err != nil {
		return "", err
	}
	devs := map[string]storage.BlockDevice{}
	for _, v := range vols {
		if bd, ok := v.BlockDevice(); ok {
			devs[v.Name()] = bd
		}
	}
	in := virt.SpecInput{
		VolumeDisk: func(v *core.VolumeConfig) (string, bool) {
			bd, ok := devs[v.Name]
			return bd.Path, ok
		},
		XID: func(name string) int {
			if o, err := h.app.Domain(name); err == nil && h.state(o).Active() {
				return 0
			}
			return -1
		},
		Running: func(name string) bool {
			o, err := h.app.Domain(name)
			return err == nil && h.state(o).Active()
		},
		ConsoleLog: filepath.Join(h.app.VMDir(d), "console.log"),
		Assigned:   h.assigned[d.Name()],
		ResolvePCI: func(port string) (string, bool) {
			addr, ok := h.env.sysfs().PathToSBDF(port)
			return addr.String(), ok
		},
	}
	in.CPUFamily, in.CPUModel = hostCPU()
	s, err := virt.NewSpec(h.app, d, in)
	if err != nil {
		return "", err
	}
	return h.conn.DomainXML(s, virt.QEMUOptions{DomainType: h.env.cfg.GetString("qemu-domain-type")}), nil
}

// hostCPU reads the CPU family and model (the rdrand quirk of §4.1).
func hostCPU() (family, model int) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "cpu family":
			fmt.Sscan(strings.TrimSpace(v), &family)
		case "model":
			fmt.Sscan(strings.TrimSpace(v), &model)
		}
		if family != 0 && model != 0 {
			break
		}
	}
	return family, model
}

// connectedRunning lists the running qubes whose netvm is d.
func (h *hv) connectedRunning(d *core.Domain) []string {
	var out []string
	for _, o := range h.app.ConnectedVMs(d) {
		if h.state(o).Active() {
			out = append(out, o.Name())
		}
	}
	sort.Strings(out)
	return out
}

// InUseError: other running qubes depend on the qube (shutdown without --force).
type InUseError struct{ Msg string }

func (e *InUseError) Error() string { return e.Msg }

// NotRunningError: the qube is halted (shutdown/kill of a halted qube).
type NotRunningError struct{ Msg string }

func (e *NotRunningError) Error() string { return e.Msg }

// requestShutdown is spec/start.md §6 steps 1-4 for one qube: refusals,
// then destroy (paused, forced) or the guest's power button.
func (h *hv) requestShutdown(ctx context.Context, d *core.Domain, force bool) error {
	name := d.Name()
	if d.Class == "AdminVM" {
		return errors.New("Cannot shutdown Dom0 fake domain!")
	}
	st := h.state(d)
	if !st.Active() {
		return &NotRunningError{Msg: fmt.Sprintf("Domain is powered off: '%s'", name)}
	}
	if !force {
		if c := h.connectedRunning(d); len(c) > 0 {
			return &InUseError{Msg: "There are other VMs connected to this VM: " + strings.Join(c, ", ")}
		}
		for _, prop := range []struct{ p, what string }{{"guivm", "GuiVM"}, {"audiovm", "AudioVM"}} {
			var users []string
			for _, o := range h.app.Domains() {
				if v, err := h.app.Get(o, prop.p); err == nil && !v.None && v.S == name && o != d && h.state(o).Active() {
					users = append(users, o.Name())
				}
			}
			if len(users) > 0 {
				return &InUseError{Msg: fmt.Sprintf("There are running VMs using this VM as %s: %s", prop.what, strings.Join(users, ", "))}
			}
		}
		if st == virt.Paused {
			return fmt.Errorf("Domain not running (either powered off or paused): '%s'", name)
		}
	}
	var err error
	if st == virt.Paused {
		err = h.conn.Destroy(ctx, name)
	} else {
		err = h.conn.Shutdown(ctx, name)
	}
	var nr *virt.NotRunningError
	if errors.As(err, &nr) {
		return &NotRunningError{Msg: nr.Error()}
	}
	if err != nil {
		return fmt.Errorf("Domain shutdown timed out: '%s'", name)
	}
	return nil
}

// kill destroys a running or paused qube and handles its stop at once.
func (h *hv) kill(ctx context.Context, d *core.Domain) error {
	if d.Class == "AdminVM" {
		return errors.New("Cannot kill Dom0 fake domain!")
	}
	if !h.state(d).Active() {
		return &NotRunningError{Msg: fmt.Sprintf("Domain is powered off: '%s'", d.Name())}
	}
	if err := h.conn.Destroy(ctx, d.Name()); err != nil {
		var nr *virt.NotRunningError
		if !errors.As(err, &nr) {
			return errors.New(virt.Message(err))
		}
	}
	h.setState(d, virt.Halted)
	h.afterStop(ctx, d)
	return nil
}

// waitHalted polls the hypervisor until every named qube is halted or its
// deadline passes. It returns the names that timed out.
func (env *Env) waitHalted(ctx context.Context, deadlines map[string]time.Time) ([]string, error) {
	pending := map[string]time.Time{}
	for n, t := range deadlines {
		pending[n] = t
	}
	var timedOut []string
	for len(pending) > 0 {
		conn, err := env.virt(ctx)
		if err != nil {
			return nil, err
		}
		states, err := conn.States(ctx)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		for n, t := range pending {
			if !states[n].Active() {
				delete(pending, n)
			} else if now.After(t) {
				timedOut = append(timedOut, n)
				delete(pending, n)
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	sort.Strings(timedOut)
	return timedOut, nil
}
