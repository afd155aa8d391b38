package backup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// emergencyScript is the documented manual restore of a format 4 backup
// (spec backup.md §12), with the filter as a parameter.
const emergencyScript = `set -e +H
backup=$1; backup_pass=$2; filter=$3; vm=$4; file=$5
tar -i -xf "$backup" backup-header backup-header.hmac qubes.xml.000.enc
echo "backup-header!$backup_pass" | scrypt dec -P backup-header.hmac backup-header.verified
diff -qs backup-header backup-header.verified >/dev/null
grep -qx 'version=4' backup-header
backup_id=$(sed -n 's/^backup-id=//p' backup-header)
echo "$backup_id!qubes.xml.000!$backup_pass" | scrypt dec -P qubes.xml.000.enc | $filter | tar -x
tar -i -xf "$backup" "$vm/"
find "$vm/" -name "$file.*.enc" | sort -V | while read f_enc; do
  f_dec=${f_enc%.enc}
  echo "$backup_id!$f_dec!$backup_pass" | scrypt dec -P $f_enc || exit 1
done | $filter | tar -x
`

func TestEmergencyRestore(t *testing.T) {
	needTool(t, "scrypt", "tar", "gzip", "bzip2", "xz")
	dir := t.TempDir()
	vol := filepath.Join(dir, "private.img")
	makeVolume(t, vol, 8<<20, map[int64]int{4096: 100000, 5 << 20: 300000})
	qubes := []Qube{{Name: "work", Files: []File{{Name: "vm7/private.img", Path: vol}}}}
	for _, tc := range []struct {
		name, filter string
		o            Options
	}{
		{"gzip", "gzip -d", Options{Compressed: true, ChunkSize: 128 << 10}},
		{"bzip2", "bzip2 -d", Options{Compressed: true, Filter: "bzip2"}},
		{"xz", "xz -d", Options{Compressed: true, Filter: "xz", ChunkSize: 64 << 10}},
		{"none", "cat", Options{ChunkSize: 200 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			out := filepath.Join(work, "qubes-backup")
			writeTestBackup(t, out, qubes, tc.o)
			cmd := exec.Command("bash", "-c", emergencyScript, "bash", out, "pass word", tc.filter, "vm7", "private.img")
			cmd.Dir = work
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("emergency procedure: %v\n%s", err, b)
			}
			if fileSum(t, filepath.Join(work, "vm7/private.img")) != fileSum(t, vol) {
				t.Error("volume restored by the emergency procedure differs")
			}
			if xml, _ := os.ReadFile(filepath.Join(work, "qubes.xml")); string(xml) != "<qubes/>\n" {
				t.Errorf("qubes.xml = %q", xml)
			}
			// The outer archive holds regular files only, in the stock order.
			b, err := exec.Command("tar", "-i", "-tvf", out).Output()
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if !strings.HasSuffix(lines[0], " backup-header") || !strings.HasSuffix(lines[1], " backup-header.hmac") || !strings.HasSuffix(lines[2], " qubes.xml.000.enc") {
				t.Errorf("member order: %q", lines[:3])
			}
			for _, l := range lines {
				if l[0] != '-' {
					t.Errorf("non-regular member: %s", l)
				}
			}
		})
	}
}
