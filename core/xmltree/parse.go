package xmltree

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SyntaxError is malformed XML, with the line where it was found.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// maxDepth bounds nesting; qubes.xml is 6 levels deep.
const maxDepth = 64

// The parser works on a string so names, values and texts are substrings
// of the input: no copy per token.
type parser struct {
	s    string
	i    int
	line int
}

// Parse reads one XML document and returns its root element.
func Parse(data []byte) (*Element, error) {
	if !utf8.Valid(data) {
		return nil, &SyntaxError{1, "not valid UTF-8"}
	}
	p := &parser{s: strings.TrimPrefix(string(data), "\xef\xbb\xbf"), line: 1}
	var root *Element
	for {
		p.skipSpace()
		if p.i >= len(p.s) {
			break
		}
		if p.s[p.i] != '<' {
			return nil, p.errf("text outside the root element")
		}
		switch {
		case p.has("<?"):
			if err := p.skipPast("?>"); err != nil {
				return nil, err
			}
		case p.has("<!--"):
			if err := p.skipPast("-->"); err != nil {
				return nil, err
			}
		case p.has("<!"):
			return nil, p.errf("DTDs and declarations are not allowed")
		default:
			if root != nil {
				return nil, p.errf("more than one root element")
			}
			e, err := p.element(0)
			if err != nil {
				return nil, err
			}
			root = e
		}
	}
	if root == nil {
		return nil, &SyntaxError{p.line, "no root element (empty document)"}
	}
	return root, nil
}

func (p *parser) errf(format string, args ...any) error {
	return &SyntaxError{p.line, fmt.Sprintf(format, args...)}
}

func (p *parser) has(prefix string) bool {
	return strings.HasPrefix(p.s[p.i:], prefix)
}

func (p *parser) advance(n int) {
	p.line += strings.Count(p.s[p.i:p.i+n], "\n")
	p.i += n
}

func (p *parser) skipPast(end string) error {
	k := strings.Index(p.s[p.i:], end)
	if k < 0 {
		return p.errf("unterminated %q", p.s[p.i:min(p.i+4, len(p.s))])
	}
	p.advance(k + len(end))
	return nil
}

func (p *parser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '\n':
			p.line++
			fallthrough
		case ' ', '\t', '\r':
			p.i++
		default:
			return
		}
	}
}

func isNameByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':', c >= 0x80:
		return true
	case c >= '0' && c <= '9', c == '-', c == '.':
		return !first
	}
	return false
}

func (p *parser) name() (string, error) {
	start := p.i
	for p.i < len(p.s) && isNameByte(p.s[p.i], p.i == start) {
		p.i++
	}
	if p.i == start {
		return "", p.errf("expected a name")
	}
	return p.s[start:p.i], nil
}

// element parses from '<' to the matching end tag.
func (p *parser) element(depth int) (*Element, error) {
	if depth > maxDepth {
		return nil, p.errf("elements nested deeper than %d", maxDepth)
	}
	e := &Element{Line: p.line, Attrs: make([]Attr, 0, 4)}
	p.i++ // '<'
	name, err := p.name()
	if err != nil {
		return nil, err
	}
	e.Name = name
	for {
		p.skipSpace()
		if p.i >= len(p.s) {
			return nil, p.errf("unexpected end of file in <%s>", name)
		}
		if p.has("/>") {
			p.i += 2
			return e, nil
		}
		if p.s[p.i] == '>' {
			p.i++
			break
		}
		an, err := p.name()
		if err != nil {
			return nil, fmt.Errorf("%w in <%s>", err, name)
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != '=' {
			return nil, p.errf("attribute %s of <%s> has no value", an, name)
		}
		p.i++
		p.skipSpace()
		if p.i >= len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\'') {
			return nil, p.errf("attribute %s of <%s> is not quoted", an, name)
		}
		q := p.s[p.i]
		k := strings.IndexByte(p.s[p.i+1:], q)
		if k < 0 {
			return nil, p.errf("unterminated value of attribute %s", an)
		}
		raw := p.s[p.i+1 : p.i+1+k]
		if strings.IndexByte(raw, '<') >= 0 {
			return nil, p.errf("'<' in value of attribute %s", an)
		}
		val, err := p.decode(raw, true)
		if err != nil {
			return nil, err
		}
		p.advance(k + 2)
		if _, dup := e.Attr(an); dup {
			return nil, p.errf("duplicate attribute %s in <%s>", an, name)
		}
		e.Attrs = append(e.Attrs, Attr{an, val})
	}
	// Text is usually one chunk; a builder is used only for mixed content.
	var text strings.Builder
	var first string
	chunks := 0
	addText := func(t string) {
		switch chunks {
		case 0:
			first = t
		case 1:
			text.WriteString(first)
			text.WriteString(t)
		default:
			text.WriteString(t)
		}
		chunks++
	}
	for {
		k := strings.IndexByte(p.s[p.i:], '<')
		if k < 0 {
			return nil, p.errf("unexpected end of file: <%s> (line %d) is not closed", name, e.Line)
		}
		if k > 0 {
			t, err := p.decode(p.s[p.i:p.i+k], false)
			if err != nil {
				return nil, err
			}
			addText(t)
			p.advance(k)
		}
		switch {
		case p.has("</"):
			p.i += 2
			end, err := p.name()
			if err != nil {
				return nil, err
			}
			if end != name {
				return nil, p.errf("</%s> closes <%s> from line %d", end, name, e.Line)
			}
			p.skipSpace()
			if p.i >= len(p.s) || p.s[p.i] != '>' {
				return nil, p.errf("malformed end tag </%s>", end)
			}
			p.i++
			if chunks == 1 {
				e.Text = first
			} else {
				e.Text = text.String()
			}
			e.Open = len(e.Children) == 0
			if len(e.Children) > 0 && strings.TrimSpace(e.Text) == "" {
				e.Text = ""
			}
			return e, nil
		case p.has("<!--"):
			if err := p.skipPast("-->"); err != nil {
				return nil, err
			}
		case p.has("<![CDATA["):
			k := strings.Index(p.s[p.i:], "]]>")
			if k < 0 {
				return nil, p.errf("unterminated CDATA section")
			}
			addText(p.s[p.i+9 : p.i+k])
			p.advance(k + 3)
		case p.has("<?"):
			if err := p.skipPast("?>"); err != nil {
				return nil, err
			}
		case p.has("<!"):
			return nil, p.errf("declarations are not allowed inside elements")
		default:
			c, err := p.element(depth + 1)
			if err != nil {
				return nil, err
			}
			e.Children = append(e.Children, c)
		}
	}
}

// decode resolves the five predefined entities and character references; in
// attributes, literal whitespace becomes a space as the XML spec requires.
func (p *parser) decode(raw string, attr bool) (string, error) {
	if strings.IndexByte(raw, '&') < 0 && (!attr || !strings.ContainsAny(raw, "\t\n\r")) {
		return raw, nil
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if attr && (c == '\t' || c == '\n' || c == '\r') {
			b.WriteByte(' ')
			continue
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		k := strings.IndexByte(raw[i:], ';')
		if k < 0 || k > 12 {
			return "", p.errf("bad entity reference near %q", raw[i:min(i+12, len(raw))])
		}
		ent := raw[i+1 : i+k]
		switch ent {
		case "amp":
			b.WriteByte('&')
		case "lt":
			b.WriteByte('<')
		case "gt":
			b.WriteByte('>')
		case "quot":
			b.WriteByte('"')
		case "apos":
			b.WriteByte('\'')
		default:
			if !strings.HasPrefix(ent, "#") {
				return "", p.errf("unknown entity &%s;", ent)
			}
			var n uint64
			var err error
			if strings.HasPrefix(ent, "#x") {
				n, err = strconv.ParseUint(ent[2:], 16, 32)
			} else {
				n, err = strconv.ParseUint(ent[1:], 10, 32)
			}
			if err != nil || n == 0 || n > utf8.MaxRune || (n < 0x20 && n != 9 && n != 10 && n != 13) {
				return "", p.errf("bad character reference &%s;", ent)
			}
			b.WriteRune(rune(n))
		}
		i += k
	}
	return b.String(), nil
}
