package firewall

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/qvm-dev/qvm/core/atomicfile"
	"github.com/qvm-dev/qvm/core/xmltree"
)

// FileName is the rules file in a qube's directory.
const FileName = "firewall.xml"

// Path is the rules file of the qube whose directory is vmDir.
func Path(vmDir string) string { return filepath.Join(vmDir, FileName) }

// DefaultRules apply while a qube has no firewall.xml: allow everything.
func DefaultRules() []Rule { return []Rule{{Action: "accept"}} }

// LoadError is a firewall.xml that cannot be read; nothing was changed.
type LoadError struct {
	Path string
	Msg  string
}

func (e *LoadError) Error() string { return fmt.Sprintf("%s: %s", e.Path, e.Msg) }

// Parse reads firewall.xml (version 2, or version 1 which it converts).
// It returns every rule, expired ones included (the QubesDB numbering
// counts them), and the file's version.
func Parse(data []byte) ([]Rule, int, error) {
	root, err := xmltree.Parse(data)
	if err != nil {
		return nil, 0, err
	}
	version, ok := root.Attr("version")
	if !ok {
		version = "1"
	}
	switch version {
	case "1":
		rules, err := parseV1(root)
		return rules, 1, err
	case "2":
		rules, err := parseV2(root)
		return rules, 2, err
	}
	return nil, 0, errorf("Unsupported firewall.xml version: %s", version)
}

func parseV2(root *xmltree.Element) ([]Rule, error) {
	if root.Name != "firewall" {
		return nil, errorf("root element is <%s>, not <firewall>", root.Name)
	}
	rules := []Rule{}
	rs := root.Child("rules")
	if rs == nil {
		return rules, nil
	}
	for i, rn := range rs.ChildrenNamed("rule") {
		var fields []Field
		seen := map[string]bool{}
		if ps := rn.Child("properties"); ps != nil {
			for _, p := range ps.ChildrenNamed("property") {
				name, _ := p.Attr("name")
				if !isKey(name) {
					return nil, errorf("rule %d: unknown property '%s' (line %d)", i, name, p.Line)
				}
				if seen[name] {
					return nil, errorf("rule %d: property '%s' given twice (line %d)", i, name, p.Line)
				}
				if p.Text == "" {
					return nil, errorf("rule %d: property '%s' is empty (line %d)", i, name, p.Line)
				}
				seen[name] = true
				fields = append(fields, Field{name, p.Text})
			}
		}
		r, err := FromFields(fields)
		if err != nil {
			return nil, errorf("rule %d (line %d): %v", i, rn.Line, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// parseV1 converts an R3 <QubesFirewallRules> the way the reference loads
// it: dns and icmp rules first, then each <rule> with the opposite of the
// policy, then a final accept when the policy allowed.
func parseV1(root *xmltree.Element) ([]Rule, error) {
	if root.Name != "QubesFirewallRules" {
		return nil, errorf("root element is <%s>, not <QubesFirewallRules> (version 1)", root.Name)
	}
	policy, _ := root.Attr("policy")
	allow := func(attr string) string {
		v, ok := root.Attr(attr)
		if !ok {
			v = policy
		}
		if v == "allow" {
			return "accept"
		}
		return "drop"
	}
	rules := []Rule{
		{Action: allow("dns"), SpecialTarget: "dns"},
		{Action: allow("icmp"), Proto: "icmp"},
	}
	action := "accept"
	if policy == "allow" {
		action = "drop"
	}
	for i, rn := range root.ChildrenNamed("rule") {
		r := Rule{Action: action}
		fail := func(err error) error { return errorf("rule %d (line %d): %v", i, rn.Line, err) }
		if addr, ok := rn.Attr("address"); ok {
			prefix := -1
			if nm, ok := rn.Attr("netmask"); ok {
				n, err := strconv.Atoi(nm)
				if err != nil || n < 0 {
					return nil, fail(errorf("bad netmask: %s", nm))
				}
				prefix = n
			}
			h, k, err := ParseDstHost(addr, prefix)
			if err != nil {
				return nil, fail(err)
			}
			r.DstHost, r.DstKind = h, k
		}
		port, hasPort := rn.Attr("port")
		if proto, ok := rn.Attr("proto"); ok && proto != "any" {
			if err := r.Set("proto", proto); err != nil {
				return nil, fail(err)
			}
		}
		if hasPort && r.Proto == "" {
			r.Proto = "tcp"
		}
		if hasPort {
			if to, ok := rn.Attr("toport"); ok {
				port += "-" + to
			}
			if err := r.Set("dstports", port); err != nil {
				return nil, fail(err)
			}
		}
		if exp, ok := rn.Attr("expire"); ok {
			if err := r.Set("expire", exp); err != nil {
				return nil, fail(err)
			}
		}
		if err := r.Validate(); err != nil {
			return nil, fail(err)
		}
		rules = append(rules, r)
	}
	if policy == "allow" {
		rules = append(rules, Rule{Action: "accept"})
	}
	return rules, nil
}

// Marshal writes rules as firewall.xml version 2, leaving out expired ones.
func Marshal(rules []Rule, now time.Time) []byte {
	root := xmltree.New("firewall", "version", "2")
	rs := root.Add(xmltree.New("rules"))
	for _, r := range rules {
		if r.Expired(now) {
			continue
		}
		props := rs.Add(xmltree.New("rule")).Add(xmltree.New("properties"))
		for _, k := range xmlOrder {
			if v, ok := r.Field(k); ok {
				p := xmltree.New("property", "name", k)
				p.Text = v
				props.Add(p)
			}
		}
	}
	return xmltree.Marshal(root)
}

// Active are the rules in force at now (what a listing shows).
func Active(rules []Rule, now time.Time) []Rule {
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		if !r.Expired(now) {
			out = append(out, r)
		}
	}
	return out
}

// Load reads a qube's rules, expired ones included; without a file it
// returns the default rules and exists=false.
func Load(vmDir string) (rules []Rule, exists bool, err error) {
	path := Path(vmDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultRules(), false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	rules, _, err = Parse(data)
	if err != nil {
		return nil, true, &LoadError{Path: path, Msg: err.Error()}
	}
	return rules, true, nil
}

// FailpointWrite is the durable step of replacing a firewall.xml (the
// hardening tests' name for it; see internal/failpoint).
const FailpointWrite = "firewall.xml.write"

// Save replaces a qube's firewall.xml atomically (mode 0664, group qubes
// where it exists), dropping expired rules.
func Save(vmDir string, rules []Rule, now time.Time) error {
	if err := os.MkdirAll(vmDir, 0o775); err != nil {
		return fmt.Errorf("qube directory: %w", err)
	}
	return atomicfile.WriteFile(Path(vmDir), Marshal(rules, now), atomicfile.Options{Mode: 0o664, Group: "qubes", Failpoint: FailpointWrite})
}

// ReadFile returns a qube's firewall.xml as stored (for backups); an
// error satisfying errors.Is(err, fs.ErrNotExist) means the qube has the
// default rules.
func ReadFile(vmDir string) ([]byte, error) { return os.ReadFile(Path(vmDir)) }

// WriteFile installs rules given as a firewall.xml (version 1 or 2, e.g.
// from a backup): it is checked first and written as version 2, so a
// broken or hostile file never lands in the qube's directory.
func WriteFile(vmDir string, data []byte, now time.Time) error {
	rules, _, err := Parse(data)
	if err != nil {
		return &LoadError{Path: Path(vmDir), Msg: err.Error()}
	}
	return Save(vmDir, rules, now)
}

// Copy gives the qube in dstDir the rules in force in srcDir (qvm clone).
// A source without a file leaves the copy on the default rules.
func Copy(srcDir, dstDir string, now time.Time) error {
	rules, exists, err := Load(srcDir)
	if err != nil || !exists {
		return err
	}
	return Save(dstDir, rules, now)
}

// Remove deletes a qube's firewall.xml (qvm remove); no file is fine.
func Remove(vmDir string) error {
	err := os.Remove(Path(vmDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", Path(vmDir), err)
	}
	if err == nil {
		return atomicfile.SyncDir(vmDir)
	}
	return nil
}
