package core

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestIPFromIDVectors(t *testing.T) {
	cases := map[int64]string{1: "10.137.0.1", 254: "10.137.0.254", 255: "10.137.1.1", 256: "10.137.1.2",
		508: "10.137.1.254", 509: "10.137.2.1", 513: "10.137.2.5"}
	for id, want := range cases {
		if got := ipFromID("10.137", id); got != want {
			t.Errorf("%d: %s, want %s", id, got, want)
		}
	}
	if got := ipFromID("10.138", 300); got != "10.138.1.46" {
		t.Errorf("dispid 300: %s", got)
	}
	if got := ipFromID("10.138", 4235); got != "10.138.16.171" {
		t.Errorf("dispid 4235: %s", got)
	}
}

func newTestApp(t *testing.T) *App {
	t.Helper()
	a := NewInitial("/var/lib/qubes", testHost(), false)
	mk := func(o CreateOpts) *Domain {
		d, err := a.Create(o)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	mk(CreateOpts{Class: "TemplateVM", Name: "tpl", Label: "black"})
	if err := a.Set(nil, "default_template", "tpl"); err != nil {
		t.Fatal(err)
	}
	net := mk(CreateOpts{Class: "AppVM", Name: "net", Label: "red"})
	if err := a.Set(net, "provides_network", "True"); err != nil {
		t.Fatal(err)
	}
	return a
}

// ip6 appears with the ipv6 feature along the netvm chain.
func TestIPv6Default(t *testing.T) {
	a := newTestApp(t)
	for i := 0; i < 27; i++ { // make the next qid 30
		if _, err := a.Create(CreateOpts{Class: "StandaloneVM", Name: fmt.Sprintf("pad%d", i), Label: "red"}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := a.Create(CreateOpts{Class: "AppVM", Name: "v6", Label: "red"})
	if err != nil {
		t.Fatal(err)
	}
	if d.QID() != 30 {
		t.Fatalf("qid %d", d.QID())
	}
	a.Set(d, "netvm", "net")
	if v, _ := a.Get(d, "ip6"); !v.None {
		t.Fatalf("ip6 without feature: %v", v)
	}
	net, _ := a.Domain("net")
	a.SetFeature(net, "ipv6", "1")
	if v, _ := a.Get(d, "ip6"); v.S != "fd09:24ef:4179::a89:1e" {
		t.Fatalf("ip6 %v", v)
	}
}

// The lowest free qid is reused; names follow the reference rules.
func TestQIDReuseAndNames(t *testing.T) {
	a := newTestApp(t)
	x, _ := a.Create(CreateOpts{Class: "AppVM", Name: "x", Label: "red"})
	a.Create(CreateOpts{Class: "AppVM", Name: "y", Label: "red"})
	if err := a.Remove(x); err != nil {
		t.Fatal(err)
	}
	z, _ := a.Create(CreateOpts{Class: "AppVM", Name: "z", Label: "red"})
	if z.QID() != 3 {
		t.Fatalf("qid %d, want the freed 3", z.QID())
	}
	bad := map[string]string{
		"Domain-0": "cannot be 'Domain-0'", "none": "'none' nor 'default'", "a b": "illegal characters",
		"-x": "cannot start with", "x-dm": "cannot end with -dm", strings.Repeat("a", 32): "shorter than 32",
	}
	for n, want := range bad {
		if err := ValidateName(n); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", n, err)
		}
	}
	if err := ValidateName("dom0"); err != nil {
		t.Errorf("dom0 passes the rules: %v", err)
	}
}

// Removal is refused while anything refers to the qube.
func TestRemoveDependencies(t *testing.T) {
	a := newTestApp(t)
	w, _ := a.Create(CreateOpts{Class: "AppVM", Name: "w", Label: "red"})
	a.Set(w, "netvm", "net")
	net, _ := a.Domain("net")
	err := a.Remove(net)
	var iu *InUseError
	if !errors.As(err, &iu) || len(iu.Deps) != 1 || iu.Deps[0] != (Dependency{Holder: "w", Property: "netvm"}) {
		t.Fatalf("%v %+v", err, iu)
	}
	// net would use itself through the default: that is a loop.
	if err := a.Set(nil, "default_netvm", "net"); err == nil || err.Error() != "Network loop on 'net'" {
		t.Fatalf("default_netvm loop: %v", err)
	}
	if err := a.SetNone(net, "netvm"); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(nil, "default_netvm", "net"); err != nil {
		t.Fatal(err)
	}
	a.Reset(w, "netvm")
	err = a.Remove(net)
	if !errors.As(err, &iu) || iu.Deps[0] != (Dependency{Property: "default_netvm"}) {
		t.Fatalf("%v", err)
	}
	if err := a.Remove(a.Dom0()); err == nil {
		t.Fatal("dom0 removed")
	}
}

// Load-time migrations: hvm, dispvm_allowed, default_fw_netvm, meminfo-writer,
// dispvm references to non-disposable templates.
func TestLoadMigrations(t *testing.T) {
	doc := `<qubes>
  <labels><label id="label-1" color="0xcc0000">red</label></labels>
  <pools><pool name="default" driver="file" dir_path="/var/lib/qubes"/></pools>
  <properties>
    <property name="default_fw_netvm">fw</property>
    <property name="default_dispvm">app</property>
  </properties>
  <domains>
    <domain class="TemplateVM" id="domain-1"><properties>
      <property name="name">tpl</property><property name="qid">1</property><property name="label">label-1</property>
      <property name="hvm">True</property></properties></domain>
    <domain class="AppVM" id="domain-2"><properties>
      <property name="name">app</property><property name="qid">2</property><property name="label">red</property>
      <property name="template">tpl</property><property name="dispvm_allowed">False</property></properties>
      <features><feature name="service.meminfo-writer"></feature></features></domain>
    <domain class="AppVM" id="domain-3"><properties>
      <property name="name">fw</property><property name="qid">3</property><property name="label">red</property>
      <property name="template">tpl</property><property name="provides_network">True</property></properties></domain>
    <domain class="AppVM" id="domain-4"><properties>
      <property name="name">net2</property><property name="qid">4</property><property name="label">red</property>
      <property name="template">tpl</property><property name="provides_network">True</property></properties></domain>
  </domains>
</qubes>`
	a, err := Parse([]byte(doc), "q", "/var/lib/qubes", testHost())
	if err != nil {
		t.Fatal(err)
	}
	tpl, _ := a.Domain("tpl")
	if v, _ := a.Get(tpl, "virt_mode"); v.S != "hvm" {
		t.Errorf("hvm -> virt_mode: %v", v)
	}
	app, _ := a.Domain("app")
	if v, ok := app.Explicit("template_for_dispvms"); !ok || v.S != "False" {
		t.Errorf("dispvm_allowed -> template_for_dispvms: %v %v", v, ok)
	}
	if v, ok := app.Explicit("maxmem"); !ok || v.S != "0" {
		t.Errorf("meminfo-writer off -> maxmem 0: %v", v)
	}
	if _, ok := app.Feature("service.meminfo-writer"); ok {
		t.Error("meminfo-writer feature kept")
	}
	// default_fw_netvm: providers without netvm get it explicitly; fw itself loops and is broken.
	net2, _ := a.Domain("net2")
	if v, ok := net2.Explicit("netvm"); !ok || v.S != "fw" {
		t.Errorf("net2 netvm %v %v", v, ok)
	}
	fw, _ := a.Domain("fw")
	if v, ok := fw.Explicit("netvm"); !ok || !v.None {
		t.Errorf("fw netvm should be explicit None after loop breaking: %v %v", v, ok)
	}
	// default_dispvm named a qube that is not a disposable template: explicit None.
	if v, ok := a.GlobalExplicit("default_dispvm"); !ok || !v.None {
		t.Errorf("default_dispvm %v %v", v, ok)
	}
	out := string(a.Marshal())
	for _, gone := range []string{"default_fw_netvm", `name="hvm"`, "dispvm_allowed", "meminfo-writer"} {
		if strings.Contains(out, gone) {
			t.Errorf("%s still written", gone)
		}
	}
}
