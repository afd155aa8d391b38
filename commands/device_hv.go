package commands

import (
	"context"
	"fmt"

	"libvirt.org/go/libvirt"

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
	return c.XMLDesc(vm)
}

func (h *deviceHV) domain(ctx context.Context, vm string) (*libvirt.Domain, error) {
	c, err := h.open(ctx)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, &virt.NotRunningError{Name: vm}
	}
	return c.Libvirt().LookupDomainByName(vm)
}

// AttachDevice implements devices.Hypervisor: a live hot-plug only (the
// persistent definition is rebuilt from qubes.xml at every start).
func (h *deviceHV) AttachDevice(ctx context.Context, vm, xml string) error {
	d, err := h.domain(ctx, vm)
	if err != nil {
		return err
	}
	defer d.Free()
	if err := d.AttachDeviceFlags(xml, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
		return fmt.Errorf("%s", virt.Message(err))
	}
	return nil
}

// DetachDevice implements devices.Hypervisor.
func (h *deviceHV) DetachDevice(ctx context.Context, vm, xml string) error {
	d, err := h.domain(ctx, vm)
	if err != nil {
		return err
	}
	defer d.Free()
	if err := d.DetachDeviceFlags(xml, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
		return fmt.Errorf("%s", virt.Message(err))
	}
	return nil
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
