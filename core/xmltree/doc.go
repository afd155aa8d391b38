// Package xmltree is a small, strict XML element tree for qubes.xml and
// firewall.xml: it keeps attribute order and the line of every element (for
// error messages), and writes the pretty-printed layout lxml produces (two
// spaces of indent, no declaration, trailing newline). It refuses DTDs and
// entity definitions, which these files never contain, so hostile input
// cannot expand.
package xmltree
