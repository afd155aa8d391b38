package commands

import (
	"context"

	"github.com/qvm-dev/qvm/core/devices"
	"github.com/qvm-dev/qvm/core/virt"
)

// deviceHV is the libvirt side of qvm device. It uses the process's
// connection (Env.virt), which view/update take before the qubes.xml lock
// whenever some qube's storage is marked running; when none is, nothing
// but dom0 can run and it does not connect at all.
type deviceHV struct {
	env    *Env
	opened bool
	conn   *virt.Conn
	err    error
}

func (env *Env) deviceHypervisor(context.Context) (devices.Hypervisor, func(), error) {
	h := &deviceHV{env: env}
	return h, h.close, nil
}

func (h *deviceHV) open(ctx context.Context) (*virt.Conn, error) {
	if !h.opened {
		h.opened = true
		if h.env.runMarkers() {
			h.conn, h.err = h.env.virt(ctx)
		}
	}
	return h.conn, h.err
}

// close ends this use; the connection stays the process's (Env.virt).
func (h *deviceHV) close() { h.conn = nil }

// Running implements devices.Hypervisor.
func (h *deviceHV) Running(ctx context.Context) ([]string, error) {
	c, err := h.open(ctx)
	if err != nil || c == nil {
		return nil, err
	}
	states, err := c.States(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for name, s := range states {
		if s.Active() {
			out = append(out, name)
		}
	}
	return out, nil
}

// LiveXML implements devices.Hypervisor.
func (h *deviceHV) LiveXML(ctx context.Context, vm string) (string, error) {
	c, err := h.open(ctx)
	if err != nil {
		return "", err
	}
	if c == nil {
		return "", &virt.NotRunningError{Name: vm}
	}
	return c.XMLDesc(ctx, vm)
}

// AttachDevice implements devices.Hypervisor: a live hot-plug only (the
// persistent definition is rebuilt from qubes.xml at every start).
func (h *deviceHV) AttachDevice(ctx context.Context, vm, xml string) error {
	c, err := h.open(ctx)
	if err != nil {
		return err
	}
	if c == nil {
		return &virt.NotRunningError{Name: vm}
	}
	return c.AttachDevice(ctx, vm, xml)
}

// DetachDevice implements devices.Hypervisor.
func (h *deviceHV) DetachDevice(ctx context.Context, vm, xml string) error {
	c, err := h.open(ctx)
	if err != nil {
		return err
	}
	if c == nil {
		return &virt.NotRunningError{Name: vm}
	}
	return c.DetachDevice(ctx, vm, xml)
}

// Flavor implements devices.Hypervisor.
func (h *deviceHV) Flavor() devices.Flavor {
	if h.conn != nil && h.conn.Driver() == "xen" {
		return devices.Xen
	}
	if h.conn == nil && virt.Driver(h.env.cfg.GetString("libvirt-uri")) == "xen" {
		return devices.Xen
	}
	return devices.QEMU
}
