package commands

import (
	"context"

	"github.com/qvm-dev/qvm/core/virt"
)

// virtConfig is the hypervisor connection the settings ask for:
// --connect > QVM_LIBVIRT_URI > libvirt-uri in qvm.yaml > host default.
func (env *Env) virtConfig() (virt.Config, error) {
	st, err := env.Store()
	if err != nil {
		return virt.Config{}, err
	}
	return virt.Config{URI: env.cfg.GetString("libvirt-uri"), StateDir: env.StateDir(), LockTimeout: st.LockTimeout,
		Helper: env.cfg.GetString("virt-helper")}, nil
}

// virt is the command's hypervisor connection, opened at the first use and
// kept until the command ends (closeVirt). It lives in a helper process
// (qvm-virt, see core/virt), so qvm itself never loads libvirt. With the
// embedded driver libvirt keeps the driver and its root until the process
// that loaded it exits, so qvm holds the lock beside the root from Open to
// the command's end (other qvm processes wait for it) and its helper loads
// the driver under it; qvm takes that lock before the qubes.xml lock (see
// holdHypervisor), never after, so the two locks cannot deadlock. qvm
// start lets the driver go (Release) while it waits for qmemmand.
func (env *Env) virt(ctx context.Context) (*virt.Conn, error) {
	if env.vconn != nil {
		return env.vconn, nil
	}
	cfg, err := env.virtConfig()
	if err != nil {
		return nil, err
	}
	c, err := virt.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	env.vconn = c
	return c, nil
}

// holdHypervisor connects before the qubes.xml lock is taken when the
// command will need the hypervisor: always for start/shutdown/kill/pause
// (needVirt), else only when some qube's storage is marked running (the
// lazy reconcile and qvm ls will ask). A failure here is left for the
// later use to report.
func (env *Env) holdHypervisor(ctx context.Context) {
	if env.vconn == nil && (env.needVirt || env.runMarkers()) {
		_, _ = env.virt(ctx)
	}
}

// closeVirt ends the command's hypervisor connection: the helper exits,
// which releases the embedded driver, and qvm lets the lock beside its
// root go, for the next command.
func (env *Env) closeVirt() {
	if env.vconn != nil {
		if err := env.vconn.Close(); err != nil && env.log != nil {
			env.log.Debug("hypervisor helper", "err", err)
		}
		env.vconn = nil
	}
}
