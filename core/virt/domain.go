package virt

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"time"

	"libvirt.org/go/libvirt"
)

// State is a qube's power state as qvm ls shows it (spec: Halted, Running,
// Paused, Halting, Dying, Crashed, Suspended, Transient).
type State string

const (
	Halted    State = "Halted"
	Running   State = "Running"
	Paused    State = "Paused"
	Halting   State = "Halting"
	Dying     State = "Dying"
	Crashed   State = "Crashed"
	Suspended State = "Suspended"
	Transient State = "Transient"
)

// Active reports whether the domain exists in the hypervisor (any state but
// Halted): is_running() in the reference.
func (s State) Active() bool { return s != Halted && s != "" }

// stateOf maps libvirt's state of an active domain.
func stateOf(st libvirt.DomainState) State {
	switch st {
	case libvirt.DOMAIN_PAUSED:
		return Paused
	case libvirt.DOMAIN_SHUTDOWN:
		return Halting
	case libvirt.DOMAIN_SHUTOFF:
		return Dying
	case libvirt.DOMAIN_CRASHED:
		return Crashed
	case libvirt.DOMAIN_PMSUSPENDED:
		return Suspended
	case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED:
		return Running
	}
	return Transient
}

// States asks the hypervisor once for every active domain: name → state.
// Domains not in the map are Halted.
func (c *Conn) States(ctx context.Context) (map[string]State, error) {
	doms, err := c.lv.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	out := make(map[string]State, len(doms))
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
func (c *Conn) State(name string) (State, error) {
	d, err := c.lv.LookupDomainByName(name)
	if err != nil {
		if isCode(err, libvirt.ERR_NO_DOMAIN) {
			return Halted, nil
		}
		return "", fmt.Errorf("look up %s: %w", name, err)
	}
	defer d.Free()
	st, _, err := d.GetState()
	if err != nil {
		if isCode(err, libvirt.ERR_NO_DOMAIN) {
			return Halted, nil
		}
		return "", fmt.Errorf("state of %s: %w", name, err)
	}
	active, err := d.IsActive()
	if err != nil || !active {
		return Halted, nil
	}
	return stateOf(st), nil
}

// NotRunningError: the domain is not active in the hypervisor.
type NotRunningError struct{ Name string }

func (e *NotRunningError) Error() string { return fmt.Sprintf("Domain is powered off: '%s'", e.Name) }

func isCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == code
}

// Message is libvirt's own message of an error (without the code prefix the
// bindings add), for one-line user messages.
func Message(err error) string {
	var le libvirt.Error
	if errors.As(err, &le) {
		return le.Message
	}
	return err.Error()
}

func (c *Conn) lookup(name string) (*libvirt.Domain, error) {
	d, err := c.lv.LookupDomainByName(name)
	if err != nil {
		if isCode(err, libvirt.ERR_NO_DOMAIN) {
			return nil, &NotRunningError{Name: name}
		}
		return nil, fmt.Errorf("look up %s: %w", name, err)
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
		return "", fmt.Errorf("define domain: %w", err)
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
		return name, fmt.Errorf("create domain %s: %w", name, err)
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
		return &NotRunningError{Name: name}
	}
	if err := fn(d); err != nil {
		if isCode(err, libvirt.ERR_OPERATION_INVALID) || isCode(err, libvirt.ERR_NO_DOMAIN) {
			if st, _ := c.State(name); !st.Active() {
				return &NotRunningError{Name: name}
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
	if Driver(c.URI) == "qemu" {
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
		return fmt.Errorf("look up %s: %w", name, err)
	}
	defer d.Free()
	if err := d.Undefine(); err != nil && !isCode(err, libvirt.ERR_NO_DOMAIN) {
		return fmt.Errorf("undefine %s: %w", name, err)
	}
	return nil
}

// WaitHalted polls until the domain is no longer active or ctx ends.
func (c *Conn) WaitHalted(ctx context.Context, name string, poll time.Duration) error {
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		st, err := c.State(name)
		if err != nil {
			return err
		}
		if !st.Active() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// XMLDesc is the live XML of a domain (for tests and debugging).
func (c *Conn) XMLDesc(name string) (string, error) {
	d, err := c.lookup(name)
	if err != nil {
		return "", err
	}
	defer d.Free()
	return d.GetXMLDesc(0)
}

func xmlName(domXML string) string {
	var v struct {
		Name string `xml:"name"`
	}
	if xml.Unmarshal([]byte(domXML), &v) != nil {
		return ""
	}
	return v.Name
}
