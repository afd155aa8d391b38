package backup

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// referenceScript builds a backup the way the reference writer does
// (spec backup.md §1-8): one `tar -cO --posix` per outer member, the inner
// tar by GNU tar with --sparse, the filter, split into chunks and one
// `scrypt enc` per chunk, one after another.
// Args: out pass filter(compress cmd or cat) chunk inner-tar-format-flags
const referenceScript = `set -e +H
out=$1; pass=$2; filter=$3; chunk=$4; fmt=$5; hdr_filter=$6; compressed=$7
id=20230405T123455-1234
enc() { echo "$2" | scrypt enc --logN 10 -r 8 -p 1 -P "$1" "$1.enc"; rm "$1"; }
printf 'version=4\nencrypted=True\ncompressed=%s\ncompression-filter=%s\nhmac-algorithm=scrypt\nbackup-id=%s\n' "$compressed" "$hdr_filter" "$id" > backup-header
echo "backup-header!$pass" | scrypt enc --logN 10 -r 8 -p 1 -P backup-header backup-header.hmac
tar -cO --posix backup-header > "$out"
tar -cO --posix backup-header.hmac >> "$out"
tar -c -C meta qubes.xml | $filter > qubes.xml.000
enc qubes.xml.000 "$id!qubes.xml.000!$pass"
tar -cO --posix qubes.xml.000.enc >> "$out"
mkdir -p vm5
tar -Pc --sparse $fmt -C src --xform=s:^private.img:vm5/\\0: private.img | $filter | split -b "$chunk" -d -a 3 - vm5/private.img.
for f in $(ls vm5/ | sort -V); do
  enc "vm5/$f" "$id!vm5/$f!$pass"
  tar -cO --posix "vm5/$f.enc" >> "$out"
done
`

func TestReadsReferenceBackups(t *testing.T) {
	needTool(t, "scrypt", "tar", "gzip", "bzip2", "xz", "split", "bash")
	src := t.TempDir()
	vol := filepath.Join(src, "private.img")
	makeVolume(t, vol, 6<<20, map[int64]int{0: 3000, 2 << 20: 400000})
	for _, tc := range []struct {
		name, filter, hdrFilter, compressed, chunk, fmt string
	}{
		{"gzip-gnu-sparse", "gzip", "gzip", "True", "100M", ""},
		{"gzip-multichunk", "gzip", "gzip", "True", "64K", ""},
		{"bzip2", "bzip2", "bzip2", "True", "100K", ""},
		{"xz", "xz", "xz", "True", "100M", ""},
		{"none", "cat", "gzip", "False", "150K", ""},
		{"pax-sparse-1.0", "gzip", "gzip", "True", "100K", "--format=posix --sparse-version=1.0"},
		{"pax-sparse-0.1", "cat", "gzip", "False", "100M", "--format=posix --sparse-version=0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			os.MkdirAll(filepath.Join(work, "meta"), 0o755)
			os.MkdirAll(filepath.Join(work, "src"), 0o755)
			os.WriteFile(filepath.Join(work, "meta/qubes.xml"), []byte("<qubes>reference</qubes>\n"), 0o644)
			if out, err := exec.Command("cp", "--sparse=always", vol, filepath.Join(work, "src/private.img")).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			archive := filepath.Join(work, "backup")
			cmd := exec.Command("bash", "-c", referenceScript, "bash", archive, "pass word", tc.filter, tc.chunk, tc.fmt, tc.hdrFilter, tc.compressed)
			cmd.Dir = work
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("reference pipeline: %v\n%s", err, out)
			}
			a, r, err := readTestBackup(t, archive, "pass word")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.QubesXML, []byte("<qubes>reference</qubes>\n")) {
				t.Errorf("qubes.xml = %q", a.QubesXML)
			}
			if p := r.files["vm5/private.img"]; p == "" || fileSum(t, p) != fileSum(t, vol) {
				t.Errorf("vm5/private.img not restored identically (%q)", p)
			}
		})
	}
	_ = context.Background
}
