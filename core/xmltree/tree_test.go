package xmltree

import (
	"errors"
	"strings"
	"testing"
)

// Parse then Marshal of an lxml-style file gives the same bytes.
func TestRoundTrip(t *testing.T) {
	in := `<qubes>
  <labels>
    <label id="label-1" color="0xcc0000">red</label>
  </labels>
  <properties>
    <property name="kernelopts">a &amp; b &lt;c&gt; "q"</property>
    <property name="netvm"/>
    <property name="kernel"></property>
  </properties>
  <x a="1 &quot;2&quot; &#10;3"/>
</qubes>
`
	root, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(Marshal(root)); got != in {
		t.Fatalf("round trip differs:\n%s", got)
	}
	if v, _ := root.Child("x").Attr("a"); v != "1 \"2\" \n3" {
		t.Fatalf("attr %q", v)
	}
	if root.Child("properties").Children[0].Line != 6 {
		t.Fatalf("line %d", root.Child("properties").Children[0].Line)
	}
}

// Malformed input is refused with the line of the problem.
func TestSyntaxErrors(t *testing.T) {
	cases := map[string]string{
		"<a><b></a>":                         "line 1: </a> closes <b>",
		"<a>\n<b>\n":                         "<b> (line 2) is not closed",
		"":                                   "empty document",
		"<a/><b/>":                           "more than one root",
		`<!DOCTYPE a [<!ENTITY x "y">]><a/>`: "DTDs",
		"<a x='1' x='2'/>":                   "duplicate attribute x",
		"<a>&foo;</a>":                       "unknown entity",
		"<a>&#0;</a>":                        "bad character reference",
		"<a b=1/>":                           "not quoted",
		"\xff":                               "UTF-8",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

// Deep nesting is refused instead of exhausting the stack.
func TestDepthLimit(t *testing.T) {
	in := strings.Repeat("<a>", 1000) + strings.Repeat("</a>", 1000)
	if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("err %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("<qubes><a b=\"c\">d</a></qubes>"))
	f.Add([]byte("<?xml version='1.0'?><!-- c --><a><![CDATA[x]]></a>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root, err := Parse(data)
		if err != nil {
			return
		}
		// What we write we must read back identically.
		out := Marshal(root)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of own output: %v\n%s", err, out)
		}
		if string(Marshal(again)) != string(out) {
			t.Fatalf("not stable")
		}
	})
}
