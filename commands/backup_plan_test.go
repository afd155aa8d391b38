package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

// The summary matches the stock layout (spec/backup.md §9 example).
func TestBackupSummaryLayout(t *testing.T) {
	got := backupSummary([]summaryRow{
		{"work", "VM", 2 << 30, ""},
		{"debian-12", "Template VM", 5 << 30, ""},
		{"standalone", "VM + Sys", 123417395, ""},
		{"dom0", "User home", 20 << 20, ""},
	}, []string{"sys-firewall", "sys-net"})
	want := `------------------+--------------+--------------+
               VM |         type |         size |
------------------+--------------+--------------+
             work |           VM |      2.0 GiB |
        debian-12 |  Template VM |      5.0 GiB |
       standalone |     VM + Sys |    117.7 MiB |
             dom0 |    User home |     20.0 MiB |
------------------+--------------+--------------+
      Total size: |                     7.1 GiB |
------------------+--------------+--------------+
VMs not selected for backup:
 - sys-firewall
 - sys-net
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestBackupProfiles(t *testing.T) {
	dir := t.TempDir()
	inc := []string{"vm1", "vm2"}
	p := &backupProfile{DestinationVM: "dom0", DestinationPath: "/var/tmp", Include: &inc, Exclude: []string{"vm3"}, PassphraseText: "test123"}
	if err := p.save(dir, "nightly"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "nightly.conf"))
	want := "compression: true\ndestination_path: /var/tmp\ndestination_vm: dom0\nexclude:\n- vm3\ninclude:\n- vm1\n- vm2\npassphrase_text: test123\n"
	if string(data) != want {
		t.Fatalf("profile:\n%s", data)
	}
	if st, _ := os.Stat(filepath.Join(dir, "nightly.conf")); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	back, err := loadBackupProfile(dir, "nightly")
	if err != nil || back.PassphraseText != "test123" || len(*back.Include) != 2 {
		t.Fatalf("%+v %v", back, err)
	}
	for name, content := range map[string]string{
		"nopath":  "destination_vm: dom0\ninclude: null\npassphrase_text: x\n",
		"nopass":  "destination_vm: dom0\ndestination_path: /x\ninclude: null\n",
		"badcomp": "destination_vm: dom0\ndestination_path: /x\ninclude: null\npassphrase_text: x\ncompression: [1]\n",
	} {
		os.WriteFile(filepath.Join(dir, name+".conf"), []byte(content), 0o600)
	}
	for name, msg := range map[string]string{
		"nopath":  "Invalid backup profile - missing 'destination_path'",
		"nopass":  "you need to specify passphrase_text or passphrase_vm",
		"badcomp": "compression must be true, false or a filter name",
		"absent":  "Backup profile does not exist: absent",
		"../etc":  "Invalid backup profile name",
	} {
		if _, err := loadBackupProfile(dir, name); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSelectForBackup(t *testing.T) {
	app := core.NewInitial("/var/lib/qubes", core.Host{}, false)
	for _, c := range []core.CreateOpts{
		{Class: "TemplateVM", Name: "tpl", Label: "black"},
		{Class: "StandaloneVM", Name: "a", Label: "red"},
		{Class: "StandaloneVM", Name: "b", Label: "red"},
	} {
		if _, err := app.Create(c); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := app.Domain("b")
	app.AddTag(b, "keep")
	app.Set(b, "include_in_backups", "False")
	names := func(ds []*core.Domain) string {
		var s []string
		for _, d := range ds {
			s = append(s, d.Name())
		}
		return strings.Join(s, ",")
	}
	sel, not, err := selectForBackup(app, nil, []string{"@type:TemplateVM"})
	if err != nil || names(sel) != "dom0,a" || strings.Join(not, ",") != "b,tpl" {
		t.Fatalf("default: %s / %v %v", names(sel), not, err)
	}
	inc := []string{"$tag:keep", "tpl"}
	if sel, _, err = selectForBackup(app, &inc, nil); err != nil || names(sel) != "b,tpl" {
		t.Fatalf("include: %s %v", names(sel), err)
	}
	tpl, _ := app.Domain("tpl")
	a, _ := app.Domain("a")
	if backupKind(app, tpl) != "Template VM" || backupKind(app, a) != "VM + Sys" || backupKind(app, app.Dom0()) != "User home" {
		t.Fatal("summary type column")
	}
	inc = []string{"ghost"}
	if _, _, err = selectForBackup(app, &inc, nil); err == nil || err.Error() != "no such domain: 'ghost'" {
		t.Fatalf("unknown: %v", err)
	}
}
