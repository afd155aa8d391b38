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

// virt connects to the hypervisor; close it as soon as the command is done
// with it (the embedded driver's root is one process's at a time).
func (env *Env) virt(ctx context.Context) (*virt.Conn, error) {
	cfg, err := env.virtConfig()
	if err != nil {
		return nil, err
	}
	return virt.Open(ctx, cfg)
}
