package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

// v3Script builds a format 3 archive the R3 way: inner tar | gzip |
// openssl enc -aes-256-cbc -md MD5 | split, an openssl HMAC after every
// chunk, one tar per pair of members.
const v3Script = `set -e
pass=$1; out=$2
printf 'version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n' > backup-header
openssl dgst -sha512 -hmac "$pass" < backup-header > backup-header.hmac
tar -cO --posix backup-header backup-header.hmac > "$out"
add() { openssl dgst -sha512 -hmac "$pass" < "$1" > "$1.hmac"; tar -cO --posix "$1" "$1.hmac" >> "$out"; }
enc() { gzip | openssl enc -e -aes-256-cbc -md MD5 -pass pass:"$pass" 2>/dev/null; }
tar -c qubes.xml | enc > qubes.xml.000
add qubes.xml.000
tar -c --sparse vm3/private.img | enc | split -b 50K -d -a 3 - vm3/private.img.
for f in $(ls vm3/private.img.[0-9]* | sort -V); do add $f; done
tar -c --sparse vm4/. | enc | split -b 100M -d -a 3 - vm4/..
for f in $(ls vm4/..[0-9]* | sort -V); do add $f; done
`

const v3XML = `<QubesVmCollection default_template="1">
  <QubesTemplateVm qid="1" name="fedora-23" label="black" template_qid="none" backup_content="True" backup_path="vm4" backup_size="1000" memory="400"/>
  <QubesAppVm qid="2" name="work" label="blue" template_qid="1" netvm_qid="none" uses_default_netvm="False" backup_content="True" backup_path="vm3" backup_size="2000" vcpus="2"/>
  <QubesAppVm qid="3" name="other" label="red" template_qid="1" backup_content="False"/>
</QubesVmCollection>
`

func TestReadsFormat3(t *testing.T) {
	needTool(t, "openssl", "tar", "gzip", "split", "bash")
	work := t.TempDir()
	os.MkdirAll(filepath.Join(work, "vm3"), 0o755)
	os.MkdirAll(filepath.Join(work, "vm4"), 0o755)
	os.WriteFile(filepath.Join(work, "qubes.xml"), []byte(v3XML), 0o644)
	makeVolume(t, filepath.Join(work, "vm3/private.img"), 4<<20, map[int64]int{8192: 200000})
	makeVolume(t, filepath.Join(work, "vm4/root.img"), 2<<20, map[int64]int{0: 70000})
	os.WriteFile(filepath.Join(work, "vm4/private.img"), []byte("tpl private"), 0o644)
	archive := filepath.Join(t.TempDir(), "v3backup")
	cmd := exec.Command("bash", "-c", v3Script, "bash", "pass word", archive)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("v3 pipeline: %v\n%s", err, out)
	}
	a, r, err := readTestBackup(t, archive, "pass word")
	if err != nil {
		t.Fatal(err)
	}
	if a.Header.Version != 3 {
		t.Fatalf("version %d", a.Header.Version)
	}
	for name, src := range map[string]string{"vm3/private.img": "vm3/private.img", "vm4/root.img": "vm4/root.img", "vm4/private.img": "vm4/private.img"} {
		if r.files[name] == "" || fileSum(t, r.files[name]) != fileSum(t, filepath.Join(work, src)) {
			t.Errorf("%s not restored identically", name)
		}
	}
	app, err := a.V3App(t.TempDir(), core.Host{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := app.Domain("work")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := d.Explicit("template"); v.S != "fedora-23" {
		t.Errorf("template %q", v.S)
	}
	if p, _ := d.Feature("backup-path"); p != "vm3/" {
		t.Errorf("backup-path %q", p)
	}
	if v, _ := d.Explicit("vcpus"); v.S != "2" {
		t.Errorf("vcpus %q", v.S)
	}
	// Wrong passphrase: the header HMAC does not verify.
	f, _ := os.Open(archive)
	defer f.Close()
	if _, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: "nope"}); err == nil {
		t.Error("wrong passphrase accepted")
	}
}

func TestV3FixtureConverts(t *testing.T) {
	data, err := os.ReadFile("testdata/v3-qubes.xml")
	if err != nil {
		t.Fatal(err)
	}
	a := &Archive{QubesXML: data}
	app, err := a.V3App(t.TempDir(), core.Host{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range app.Domains() {
		if d.Class != "AdminVM" {
			n++
		}
	}
	if n < 10 {
		t.Errorf("%d qubes converted from the R3 fixture", n)
	}
}
