package commands

import (
	"context"
	"strings"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/devices"
)

// deviceManager works on the start's own hypervisor connection.
func (h *hv) deviceManager() *devices.Manager {
	m := &devices.Manager{App: h.app, Disc: h.env.discoverer(), HV: &deviceHV{env: h.env, opened: true, conn: h.conn}}
	if v, ok := h.app.Dom0().Feature("suspend-s0ix"); ok && v != "" {
		m.S0ix = true
	}
	return m
}

// withRequiredDevices checks that every required device of d is present
// (else the start fails as the reference's does) and puts the required
// block devices into the domain XML, so they are there from boot.
func (h *hv) withRequiredDevices(d *core.Domain, domXML string) (string, error) {
	if len(d.Devices) == 0 {
		return domXML, nil
	}
	disks, err := h.deviceManager().StartConfig(d)
	if err != nil || len(disks) == 0 {
		return domXML, err
	}
	i := strings.LastIndex(domXML, "</devices>")
	if i < 0 {
		return domXML, nil
	}
	return domXML[:i] + strings.Join(disks, "") + domXML[i:], nil
}

// autoAttachDevices attaches, once d runs, the present devices of its
// auto-attach and ask-to-attach assignments; a device that cannot be
// attached is a warning, not a failed start.
func (h *hv) autoAttachDevices(ctx context.Context, d *core.Domain) {
	if len(d.Devices) == 0 {
		return
	}
	h.deviceManager().AutoAttach(ctx, d, func(msg string) {
		h.env.warnf(d.Name(), "device not attached: %s", msg)
	})
}
