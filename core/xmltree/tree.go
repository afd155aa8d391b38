package xmltree

import (
	"fmt"
	"strings"
)

// Attr is one attribute; order is kept as read or as added.
type Attr struct {
	Name, Value string
}

// Element is one XML element. Text is the character data directly inside it
// (surrounding whitespace of pretty-printed files is not significant here).
type Element struct {
	Name     string
	Attrs    []Attr
	Children []*Element
	Text     string
	Line     int
	// Open writes an empty element as <x></x> instead of <x/>; lxml makes
	// that distinction (text "" versus no text) and qubes.xml shows both.
	Open bool
}

// New makes an element with attributes given as name, value pairs.
func New(name string, attrs ...string) *Element {
	e := &Element{Name: name}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attrs = append(e.Attrs, Attr{attrs[i], attrs[i+1]})
	}
	return e
}

// Attr returns the value of attribute name and whether it is present.
func (e *Element) Attr(name string) (string, bool) {
	for _, a := range e.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// SetAttr sets or appends an attribute.
func (e *Element) SetAttr(name, value string) {
	for i := range e.Attrs {
		if e.Attrs[i].Name == name {
			e.Attrs[i].Value = value
			return
		}
	}
	e.Attrs = append(e.Attrs, Attr{name, value})
}

// Add appends child and returns it.
func (e *Element) Add(child *Element) *Element {
	e.Children = append(e.Children, child)
	return child
}

// Child returns the first child named name, or nil.
func (e *Element) Child(name string) *Element {
	for _, c := range e.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// ChildrenNamed returns the children named name, in order.
func (e *Element) ChildrenNamed(name string) []*Element {
	var out []*Element
	for _, c := range e.Children {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// Describe names the element for error messages: <domain id="domain-3"> line 40.
func (e *Element) Describe() string {
	var b strings.Builder
	b.WriteString("<" + e.Name)
	for _, a := range e.Attrs {
		if a.Name == "id" || a.Name == "name" || a.Name == "class" {
			fmt.Fprintf(&b, " %s=%q", a.Name, a.Value)
		}
	}
	b.WriteString(">")
	if e.Line > 0 {
		fmt.Fprintf(&b, " at line %d", e.Line)
	}
	return b.String()
}
