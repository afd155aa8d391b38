package core

import "fmt"

// The error types below carry the message users see; commands map them to
// exit codes (a NoSuchQubeError on an argument is a usage error, exit 2).

// NoSuchQubeError: a name that is not a domain.
type NoSuchQubeError struct{ Name string }

func (e *NoSuchQubeError) Error() string { return fmt.Sprintf("no such domain: '%s'", e.Name) }

// NoSuchPropertyError: a property the target does not have.
type NoSuchPropertyError struct{ Name string }

func (e *NoSuchPropertyError) Error() string { return fmt.Sprintf("no such property: '%s'", e.Name) }

// ValueError: a value refused by a property, feature, tag or rule.
type ValueError struct{ Msg string }

func (e *ValueError) Error() string { return e.Msg }

func valueErrorf(format string, args ...any) error {
	return &ValueError{Msg: fmt.Sprintf(format, args...)}
}

// NoDefaultError: a property that is neither set nor has a default.
type NoDefaultError struct{ Name string }

func (e *NoDefaultError) Error() string {
	return fmt.Sprintf("property '%s' have no default", e.Name)
}

// InUseError: removal or change refused because something depends on it.
type InUseError struct {
	Msg  string
	Deps []Dependency
}

func (e *InUseError) Error() string { return e.Msg }

// Dependency is one holder of a reference: Holder "" means a global property.
type Dependency struct {
	Holder   string
	Property string
}

// LoadError: qubes.xml could not be loaded; nothing was changed.
type LoadError struct {
	Path string
	Line int
	Elem string
	Msg  string
}

func (e *LoadError) Error() string {
	s := e.Path
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Elem != "" {
		s += ": " + e.Elem
	}
	return s + ": " + e.Msg
}
