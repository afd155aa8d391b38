package core

import (
	"strings"

	"github.com/google/uuid"
)

// Get returns the effective value of a property of d (globals when d is nil).
func (a *App) Get(d *Domain, name string) (Value, error) {
	p, err := lookupProp(d, name)
	if err != nil {
		return none, err
	}
	if !p.Stateless && !p.ReadOnly {
		var v Value
		var ok bool
		if d == nil {
			v, ok = a.props[name]
		} else {
			v, ok = d.props[name]
		}
		if ok {
			return v, nil
		}
	}
	if p.def == nil {
		return none, &NoDefaultError{Name: name}
	}
	return p.def(a, d)
}

// IsDefault reports whether a property uses its default (is not set).
func (a *App) IsDefault(d *Domain, name string) bool {
	if d == nil {
		_, ok := a.props[name]
		return !ok
	}
	_, ok := d.props[name]
	return !ok
}

// Set sets a property from user text, with the reference's coercion,
// validation and side effects.
func (a *App) Set(d *Domain, name, text string) error {
	p, err := lookupProp(d, name)
	if err != nil {
		return err
	}
	if p.Stateless || p.ReadOnly {
		class := "Qubes"
		if d != nil {
			class = d.Class
		}
		return valueErrorf("property '%s' on %s instance cannot be set", name, class)
	}
	v, err := a.coerce(p, d, text)
	if err != nil {
		return err
	}
	return a.setValue(p, d, v)
}

// SetNone sets a property to None (an empty VM reference).
func (a *App) SetNone(d *Domain, name string) error {
	p, err := lookupProp(d, name)
	if err != nil {
		return err
	}
	if p.Kind != KVM {
		return a.Set(d, name, "")
	}
	return a.setValue(p, d, none)
}

func (a *App) props_(d *Domain) map[string]Value {
	if d == nil {
		return a.props
	}
	return d.props
}

func (a *App) setValue(p *Prop, d *Domain, v Value) error {
	m := a.props_(d)
	old, had := m[p.Name]
	if p.WriteOnce && had && !a.loading {
		return valueErrorf("property '%s' is write-once and already set", p.Name)
	}
	if p.check != nil {
		var err error
		if v, err = p.check(a, d, v); err != nil {
			return err
		}
	}
	m[p.Name] = v
	if p.after != nil && !a.loading {
		if err := p.after(a, d, old, had); err != nil {
			if had {
				m[p.Name] = old
			} else {
				delete(m, p.Name)
			}
			return err
		}
	}
	return nil
}

// Reset removes an explicit value so the default applies again.
func (a *App) Reset(d *Domain, name string) error {
	p, err := lookupProp(d, name)
	if err != nil {
		return err
	}
	if p.Stateless || p.ReadOnly {
		return valueErrorf("property '%s' cannot be reset", name)
	}
	if p.WriteOnce {
		if _, had := a.props_(d)[name]; had {
			return valueErrorf("property '%s' is write-once and already set", name)
		}
	}
	if name == "template" {
		if dt, err := a.Get(nil, "default_template"); err == nil && !dt.None && d.Class == "AppVM" {
			return valueErrorf("Cannot unset template. You can set it to the current default (%s) instead", dt.S)
		}
		return valueErrorf("Cannot unset template")
	}
	m := a.props_(d)
	old, had := m[name]
	delete(m, name)
	// The default must pass the same rules a set would (netvm loops, …).
	if p.check != nil {
		if dv, err := a.Get(d, name); err == nil {
			if _, err := p.check(a, d, dv); err != nil {
				if had {
					m[name] = old
				}
				return err
			}
		}
	}
	if p.after != nil {
		if err := p.after(a, d, old, had); err != nil {
			if had {
				m[name] = old
			}
			return err
		}
	}
	return nil
}

// coerce turns user text into a value of the property's kind.
func (a *App) coerce(p *Prop, d *Domain, text string) (Value, error) {
	switch p.Kind {
	case KBool:
		b, err := ParseBool(text)
		if err != nil {
			return none, err
		}
		return boolValue(b), nil
	case KInt:
		n, err := parseInt(text)
		if err != nil {
			return none, err
		}
		return intValue(n), nil
	case KVM:
		if text == "" {
			return none, nil
		}
		t, ok := a.byName[text]
		if !ok {
			if err := ValidateName(text); err != nil {
				return none, err
			}
			return none, valueErrorf("Can't set %s to non-existing qube %s", p.Name, text)
		}
		if t.Class == "RemoteVM" && p.Name != "relayvm" {
			return none, valueErrorf("wrong VM class: domains['%s'] is of type RemoteVM and not LocalVM", text)
		}
		if p.VMClass != "" && t.Class != p.VMClass {
			return none, valueErrorf("wrong VM class: domains['%s'] is of type %s and not %s", text, t.Class, p.VMClass)
		}
		return str(text), nil
	case KLabel:
		l, err := a.Label(text)
		if err != nil {
			return none, err
		}
		return str(l.Name), nil
	case KUUID:
		u, err := uuid.Parse(text)
		if err != nil {
			return none, valueErrorf("badly formed hexadecimal UUID string: '%s'", text)
		}
		return str(u.String()), nil
	case KIPv4, KIPv6:
		if text == "" {
			return none, nil
		}
		s, err := parseIP(p.Kind, text)
		return str(s), err
	}
	if !isPrintableASCII(text) {
		return none, valueErrorf("value of property '%s' must be printable ASCII", p.Name)
	}
	return str(text), nil
}

// ValidateName applies the reference's qube name rules.
func ValidateName(name string) error {
	switch {
	case len(name) > 31:
		return valueErrorf("VM name must be shorter than 32 characters")
	case name == "":
		return valueErrorf("VM name contains illegal characters")
	case strings.ContainsAny(name[:1], "0123456789_.-"):
		return valueErrorf("VM name cannot start with hyphen, underscore, dot or numbers")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return valueErrorf("VM name contains illegal characters")
		}
	}
	switch {
	case name == "Domain-0":
		return valueErrorf("VM name cannot be 'Domain-0'")
	case name == "none" || name == "default":
		return valueErrorf("VM name cannot be 'none' nor 'default'")
	case strings.HasSuffix(name, "-dm"):
		return valueErrorf("VM name cannot end with -dm")
	}
	return nil
}
