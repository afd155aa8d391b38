package lvconn

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"

	"libvirt.org/go/libvirt"

	"github.com/qvm-dev/qvm/core/virt"
)

// stateOf maps libvirt's state of an active domain.
func stateOf(st libvirt.DomainState) virt.State {
	switch st {
	case libvirt.DOMAIN_PAUSED:
		return virt.Paused
	case libvirt.DOMAIN_SHUTDOWN:
		return virt.Halting
	case libvirt.DOMAIN_SHUTOFF:
		return virt.Dying
	case libvirt.DOMAIN_CRASHED:
		return virt.Crashed
	case libvirt.DOMAIN_PMSUSPENDED:
		return virt.Suspended
	case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED:
		return virt.Running
	}
	return virt.Transient
}

// States asks the hypervisor once for every active domain: name → state.
// Domains not in the map are Halted.
func (c *Conn) States(ctx context.Context) (map[string]virt.State, error) {
	doms, err := c.lv.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", lverr(err))
	}
	out := make(map[string]virt.State, len(doms))
	for i := range doms {
		d := &doms[i]
		name, err1 := d.GetName()
		st, _, err2 := d.GetState()
		d.Free()
		if err1 != nil || err2 != nil {
			continue // gone between the list and the question
		}
		out[name] = stateOf(st)
	}
	return out, nil
}

// State is one domain's power state; an unknown or inactive domain is Halted.
func (c *Conn) State(name string) (virt.State, error) {
	d, err := c.lv.LookupDomainByName(name)
	if err != nil {
		if isCode(err, libvirt.ERR_NO_DOMAIN) {
			return virt.Halted, nil
		}
		return "", fmt.Errorf("look up %s: %w", name, lverr(err))
	}
	defer d.Free()
	st, _, err := d.GetState()
	if err != nil {
		if isCode(err, libvirt.ERR_NO_DOMAIN) {
			return virt.Halted, nil
		}
		return "", fmt.Errorf("state of %s: %w", name, lverr(err))
	}
	active, err := d.IsActive()
	if err != nil || !active {
		return virt.Halted, nil
	}
	return stateOf(st), nil
}

func isCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == code
}

// lverr gives a libvirt error its pure form (virt.Error), which keeps
// its code and message across the helper's pipe; other errors stay.
func lverr(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) {
		return &virt.Error{Code: int(le.Code), Domain: int(le.Domain), Message: le.Message}
	}
	return err
}

func (c *Conn) lookup(name string) (*libvirt.Domain, error) {
	d, err := c.lv.LookupDomainByName(name)
	if err != nil {
		if isCode(err, libvirt.ERR_NO_DOMAIN) {
			return nil, &virt.NotRunningError{Name: name}
		}
		return nil, fmt.Errorf("look up %s: %w", name, lverr(err))
	}
	return d, nil
}

// CreatePaused defines the domain from xml (replacing an inactive
// definition of the same name) and starts it paused, as the reference does
// so that everything around it can be set up before the guest runs.
func (c *Conn) CreatePaused(domXML string) (string, error) {
	d, err := c.lv.DomainDefineXML(domXML)
	if err != nil && isCode(err, libvirt.ERR_OPERATION_FAILED) {
		// An old inactive definition with another UUID (the qube was
		// removed and created again): qubes.xml is the truth, drop it.
		if name := xmlName(domXML); name != "" {
			if st, _ := c.State(name); !st.Active() {
				_ = c.Undefine(name)
				d, err = c.lv.DomainDefineXML(domXML)
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("define domain: %w", lverr(err))
	}
	defer d.Free()
	name, _ := d.GetName()
	create := func() error { return d.CreateWithFlags(libvirt.DOMAIN_START_PAUSED) }
	if c.Driver() == "test" {
		// libvirt's test driver knows no START_PAUSED; the same end state.
		create = func() error {
			if err := d.Create(); err != nil {
				return err
			}
			return d.Suspend()
		}
	}
	if err := create(); err != nil {
		_ = d.Undefine()
		return name, fmt.Errorf("create domain %s: %w", name, lverr(err))
	}
	return name, nil
}

func (c *Conn) with(name string, what string, fn func(*libvirt.Domain) error) error {
	d, err := c.lookup(name)
	if err != nil {
		return err
	}
	defer d.Free()
	if active, err := d.IsActive(); err == nil && !active {
		return &virt.NotRunningError{Name: name}
	}
	if err := fn(d); err != nil {
		if isCode(err, libvirt.ERR_OPERATION_INVALID) || isCode(err, libvirt.ERR_NO_DOMAIN) {
			if st, _ := c.State(name); !st.Active() {
				return &virt.NotRunningError{Name: name}
			}
		}
		return fmt.Errorf("%s %s: %w", what, name, err)
	}
	return nil
}

// Resume unpauses a domain.
func (c *Conn) Resume(name string) error {
	return c.with(name, "resume", func(d *libvirt.Domain) error { return d.Resume() })
}

// Suspend pauses a domain.
func (c *Conn) Suspend(name string) error {
	return c.with(name, "pause", func(d *libvirt.Domain) error { return d.Suspend() })
}

// Shutdown asks the guest to power off (ACPI power button on QEMU, the PV
// shutdown request on Xen); it returns at once.
func (c *Conn) Shutdown(name string) error {
	flags := libvirt.DOMAIN_SHUTDOWN_DEFAULT
	if virt.Driver(c.URI) == "qemu" {
		flags = libvirt.DOMAIN_SHUTDOWN_ACPI_POWER_BTN
	}
	return c.with(name, "shut down", func(d *libvirt.Domain) error { return d.ShutdownFlags(flags) })
}

// Destroy kills a domain at once.
func (c *Conn) Destroy(name string) error {
	return c.with(name, "kill", func(d *libvirt.Domain) error { return d.Destroy() })
}

// Undefine drops an inactive domain's persistent definition (qvm defines
// again at every start from qubes.xml, which is the only truth). Unknown
// domains are fine.
func (c *Conn) Undefine(name string) error {
	d, err := c.lv.LookupDomainByName(name)
	if err != nil {
		if isCode(err, libvirt.ERR_NO_DOMAIN) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, lverr(err))
	}
	defer d.Free()
	if err := d.Undefine(); err != nil && !isCode(err, libvirt.ERR_NO_DOMAIN) {
		return fmt.Errorf("undefine %s: %w", name, lverr(err))
	}
	return nil
}

// XMLDesc is the live XML of a domain (for tests and debugging).
func (c *Conn) XMLDesc(name string) (string, error) {
	d, err := c.lookup(name)
	if err != nil {
		return "", err
	}
	defer d.Free()
	x, err := d.GetXMLDesc(0)
	return x, lverr(err)
}

// AttachDevice hot-plugs a device into the running domain only (the
// persistent definition is rebuilt from qubes.xml at every start); the
// error is libvirt's message.
func (c *Conn) AttachDevice(name, devXML string) error {
	return c.live(name, func(d *libvirt.Domain) error { return d.AttachDeviceFlags(devXML, libvirt.DOMAIN_DEVICE_MODIFY_LIVE) })
}

// DetachDevice unplugs a device from the running domain.
func (c *Conn) DetachDevice(name, devXML string) error {
	return c.live(name, func(d *libvirt.Domain) error { return d.DetachDeviceFlags(devXML, libvirt.DOMAIN_DEVICE_MODIFY_LIVE) })
}

// live runs a device change on the domain; its error reads as libvirt's
// message alone.
func (c *Conn) live(name string, fn func(*libvirt.Domain) error) error {
	d, err := c.lookup(name)
	if err != nil {
		return err
	}
	defer d.Free()
	if err := fn(d); err != nil {
		return &messageError{lverr(err)}
	}
	return nil
}

// messageError reads as libvirt's message alone and wraps the error.
type messageError struct{ err error }

func (e *messageError) Error() string { return virt.Message(e.err) }
func (e *messageError) Unwrap() error { return e.err }

func xmlName(domXML string) string {
	var v struct {
		Name string `xml:"name"`
	}
	if xml.Unmarshal([]byte(domXML), &v) != nil {
		return ""
	}
	return v.Name
}
