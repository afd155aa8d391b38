package xmltree

import "strings"

// Marshal writes the element the way lxml pretty-prints it: two-space
// indent, empty elements as <x/>, elements with text inline, no declaration,
// trailing newline.
func Marshal(root *Element) []byte {
	var b strings.Builder
	b.Grow(sizeHint(root, 0))
	write(&b, root, 0)
	return []byte(b.String())
}

func write(b *strings.Builder, e *Element, depth int) {
	for i := 0; i < depth; i++ {
		b.WriteString("  ")
	}
	b.WriteByte('<')
	b.WriteString(e.Name)
	for _, a := range e.Attrs {
		b.WriteByte(' ')
		b.WriteString(a.Name)
		b.WriteString(`="`)
		escape(b, a.Value, true)
		b.WriteByte('"')
	}
	switch {
	case len(e.Children) == 0 && e.Text == "" && !e.Open:
		b.WriteString("/>\n")
	case len(e.Children) == 0:
		b.WriteByte('>')
		escape(b, e.Text, false)
		b.WriteString("</" + e.Name + ">\n")
	default:
		b.WriteString(">\n")
		for _, c := range e.Children {
			write(b, c, depth+1)
		}
		for i := 0; i < depth; i++ {
			b.WriteString("  ")
		}
		b.WriteString("</" + e.Name + ">\n")
	}
}

// escape follows libxml2's serialiser: &, <, > always; " in attributes;
// tab, newline and carriage return in attributes as character references
// so they survive attribute-value normalisation on the next read.
func escape(b *strings.Builder, s string, attr bool) {
	start := 0
	for i := 0; i < len(s); i++ {
		var rep string
		switch s[i] {
		case '&':
			rep = "&amp;"
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		case '"':
			if attr {
				rep = "&quot;"
			}
		case '\r':
			rep = "&#13;"
		case '\n':
			if attr {
				rep = "&#10;"
			}
		case '\t':
			if attr {
				rep = "&#9;"
			}
		}
		if rep != "" {
			b.WriteString(s[start:i])
			b.WriteString(rep)
			start = i + 1
		}
	}
	b.WriteString(s[start:])
}

// sizeHint estimates the output size so the buffer grows once.
func sizeHint(e *Element, depth int) int {
	n := 2*depth + 2*len(e.Name) + len(e.Text) + 8
	for _, a := range e.Attrs {
		n += len(a.Name) + len(a.Value) + 4
	}
	for _, c := range e.Children {
		n += sizeHint(c, depth+1)
	}
	return n + n/16
}
