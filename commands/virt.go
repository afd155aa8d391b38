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
	return virt.Config{URI: env.cfg.GetString("libvirt-uri"), StateDir: env.StateDir(), LockTimeout: st.LockTimeout}, nil
}

// virt is the command's hypervisor connection, opened at the first use and
// kept until the process ends. With the embedded driver that is the only
// honest choice: libvirt keeps the driver and its root until the process
// exits, so qvm keeps the lock beside the root as long (other qvm
// processes wait for it) and takes it before the qubes.xml lock (see
// holdHypervisor), never after, so the two locks cannot deadlock.
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
