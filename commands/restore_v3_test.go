package commands

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// An R3.x (format 3) backup built with openssl, tar and gzip the R3 way is
// restored: qubes in qubes.xml, volumes with the same bytes.
func TestRestoreFormat3(t *testing.T) {
	for _, tool := range []string{"openssl", "tar", "gzip", "split", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s missing (deps/backup.deb)", tool)
		}
	}
	root := t.TempDir()
	work := filepath.Join(root, "work")
	for _, d := range []string{"vm3", "vm4"} {
		os.MkdirAll(filepath.Join(work, d), 0o755)
	}
	os.WriteFile(filepath.Join(work, "qubes.xml"), []byte(`<QubesVmCollection default_template="1">
  <QubesAdminVm qid="0" name="dom0" label="black" backup_content="True" backup_path="dom0-home/user" backup_size="8192"/>
  <QubesTemplateVm qid="1" name="fedora-23" label="black" template_qid="none" backup_content="True" backup_path="vm4" backup_size="1000"/>
  <QubesAppVm qid="2" name="work" label="blue" template_qid="1" uses_default_netvm="True" backup_content="True" backup_path="vm3" backup_size="2000" vcpus="2"/>
</QubesVmCollection>
`), 0o644)
	priv := make([]byte, 300<<10)
	rand.Read(priv)
	os.WriteFile(filepath.Join(work, "vm3/private.img"), priv, 0o644)
	rootImg := make([]byte, 100<<10)
	rand.Read(rootImg)
	os.WriteFile(filepath.Join(work, "vm4/root.img"), rootImg, 0o644)
	os.WriteFile(filepath.Join(work, "vm4/private.img"), []byte("tpl"), 0o644)
	// dom0's home, as R3 archived it: a tree renamed to dom0-home/user.
	os.MkdirAll(filepath.Join(root, "homes/user/.config"), 0o755)
	os.WriteFile(filepath.Join(root, "homes/user/.config/r3.conf"), []byte("from R3\n"), 0o644)
	script := `set -e
pass=$1; out=$2
printf 'version=3\nhmac-algorithm=SHA512\ncrypto-algorithm=aes-256-cbc\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n' > backup-header
openssl dgst -sha512 -hmac "$pass" < backup-header > backup-header.hmac
tar -cO --posix backup-header backup-header.hmac > "$out"
add() { openssl dgst -sha512 -hmac "$pass" < "$1" > "$1.hmac"; tar -cO --posix "$1" "$1.hmac" >> "$out"; }
enc() { gzip | openssl enc -e -aes-256-cbc -md MD5 -pass pass:"$pass" 2>/dev/null; }
tar -c qubes.xml | enc > qubes.xml.000; add qubes.xml.000
tar -c vm3/private.img | enc | split -b 100K -d -a 3 - vm3/private.img.
for f in $(ls vm3/private.img.[0-9]* | sort -V); do add $f; done
tar -c vm4/. | enc | split -b 100M -d -a 3 - vm4/..
for f in $(ls vm4/..[0-9]* | sort -V); do add $f; done
mkdir -p dom0-home
tar -c -C ../homes --xform 's:^user:dom0-home/\0:' user | enc | split -b 100M -d -a 3 - dom0-home/user.
for f in $(ls dom0-home/user.[0-9]* | sort -V); do add $f; done
`
	archive := filepath.Join(root, "r3backup")
	cmd := exec.Command("bash", "-c", script, "bash", "r3 pass", archive)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("R3 pipeline: %v\n%s", err, out)
	}
	state := filepath.Join(root, "state")
	t.Setenv("QVM_CONFIG", filepath.Join(root, "none.yaml"))
	t.Setenv("QVM_STATE_DIR", state)
	mustQvm(t, "init", "--reflink", "no")
	pw := filepath.Join(root, "pw")
	os.WriteFile(pw, []byte("r3 pass\n"), 0o600)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "home")
	os.MkdirAll(home, 0o755)
	t.Setenv("QVM_DOM0_USER", me.Username)
	t.Setenv("QVM_DOM0_HOME", home)
	out := mustQvm(t, "restore", "--ignore-username-mismatch", "-p", pw, archive)
	if got, _ := filepath.Glob(filepath.Join(home, "home-restore-*/dom0-home/user/.config/r3.conf")); len(got) != 1 {
		t.Errorf("dom0 home from R3 not restored: %v", got)
	} else if b, _ := os.ReadFile(got[0]); string(b) != "from R3\n" {
		t.Errorf("r3.conf = %q", b)
	}
	if !strings.Contains(out, " work |      AppVM | fedora-23 |") {
		t.Errorf("summary:\n%s", out)
	}
	if got := strings.TrimSpace(mustQvm(t, "prefs", "work", "vcpus")); got != "2" {
		t.Errorf("vcpus = %q", got)
	}
	for p, want := range map[string][]byte{"appvms/work/private.img": priv, "vm-templates/fedora-23/root.img": rootImg} {
		got, err := os.ReadFile(filepath.Join(state, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not restored identically (%v)", p, err)
		}
	}
}
