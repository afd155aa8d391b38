package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// benchBackup measures qvm backup and qvm restore of one qube's private
// volume next to the reference-style pipeline on the same file with the
// same scrypt parameters: `tar --sparse | gzip | split`, then `scrypt enc`
// and `tar -cO --posix` per chunk, one after another (and for restore
// `scrypt dec` per chunk, then `gzip -d | tar -x`).
// QVM_BENCH_BACKUP_MIB scales the volumes down for a quick run.
func benchBackup(r *runner) (string, error) {
	if msg := missingTool("scrypt", "tar", "gzip", "split"); msg != "" {
		return msg, nil
	}
	unit := int64(1024) // MiB of the "1 GiB" volume
	if s := os.Getenv("QVM_BENCH_BACKUP_MIB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 16 {
			return "", fmt.Errorf("QVM_BENCH_BACKUP_MIB=%q: want a number of MiB >= 16", s)
		}
		unit = n
	}
	const params = "17:8:1"
	var b strings.Builder
	fmt.Fprintf(&b, "One qube's private volume backed up with gzip (100 MiB chunks) and restored into a fresh state dir; scrypt parameters %s (128 MiB, one key per chunk) for both sides. qvm: `qvm backup -y` and `qvm restore` (whole processes, including state and volume import). Reference-style: `tar --sparse -c | gzip | split -b 100M`, then per chunk `scrypt enc --logN 17 -r 8 -p 1` and `tar -cO --posix`, one after another; restore: `tar -i -x`, `scrypt dec` per chunk, `cat | gzip -d | tar -x`, then `sync FILE` on the restored volume, because `qvm restore` returns only once the volume is on disk (it fsyncs it before qubes.xml names the qube); the row without that sync is shown too. Every timed step starts after a `sync`, so that none pays for the writeback of the step before it. Backups: one run each; restores: %d runs of each side, alternating, and the median (of the script's time, of that time with the sync, and of the sync alone, each on its own). Same files, same run. RSS is GNU time's peak resident set (for the scripts: their largest process, `scrypt`).\n\n", params, r.restoreReps)
	b.WriteString("| volume | step | qvm | reference-style | ratio | qvm peak RSS | reference peak RSS |\n|---|---|---|---|---|---|---|\n")
	vols := []struct {
		name string
		size int64
		fill func(f *os.File, size int64) error
	}{
		{fmt.Sprintf("%d MiB: half random, half holes", 2*unit), 2 * unit << 20, fillHalfRandom},
		{fmt.Sprintf("%d MiB compressible (text-like)", unit), unit << 20, fillText},
	}
	for i, v := range vols {
		rows, err := benchBackupVolume(r, i, v.name, v.size, v.fill, params)
		if err != nil {
			return "", err
		}
		b.WriteString(rows)
	}
	b.WriteString("\nMemory: qvm holds at most two chunk buffers (2 × 100 MiB) and the gzip blocks (a few MiB), whatever the volume size, plus the scrypt work areas (128 MiB per key at these parameters, mapped outside the Go heap, reused from key to key and unmapped at the end). A backup derives one key at a time. A restore derives keys in pairs (two in one AVX2 pass): while it opens the archive, the header's and qubes.xml's pair on one core and the first two chunks' pair on the other, so up to four areas (512 MiB); then one pair at a time. All derivations at once stay within the KDF memory limit (half the RAM by default), so a backup made with larger parameters gets fewer at once, not more memory. `scrypt` itself needs 128 MiB per run. The reference-style restore decrypts each chunk to a file before using it, as the stock restore does; qvm keeps the chunk in memory until its HMAC is checked, then stages the volume in the state dir (so that qubes.xml only ever lists fully restored qubes) and moves it into the pool when both are on one filesystem (storage `Volume.ImportFile`; a copy otherwise).\n")
	return b.String(), nil
}

func fillHalfRandom(f *os.File, size int64) error {
	// 1 MiB of random data every 2 MiB: half data, half holes.
	rnd := rand.New(rand.NewSource(1))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 2 << 20 {
		rnd.Read(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	return f.Truncate(size)
}

func fillText(f *os.File, size int64) error {
	rnd := rand.New(rand.NewSource(2))
	words := strings.Fields("qube volume backup restore dom0 template private root kernel netvm firewall label tag feature device pool chunk scrypt gzip header")
	var line bytes.Buffer
	buf := make([]byte, 0, 1<<20)
	for off := int64(0); off < size; {
		buf = buf[:0]
		for len(buf) < 1<<20-200 {
			line.Reset()
			fmt.Fprintf(&line, "%d ", rnd.Intn(1000000))
			for j := 0; j < 8; j++ {
				line.WriteString(words[rnd.Intn(len(words))] + " ")
			}
			line.WriteByte('\n')
			buf = append(buf, line.Bytes()...)
		}
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// settle writes back what earlier steps left dirty before a timed step:
// otherwise the step's own fsync, or the disk it shares with the
// writeback, pays for the step before (ext4 commits every file's ordered
// data with one fsync).
func settle() { _ = exec.Command("sync").Run() }

type timed struct {
	el  time.Duration
	rss int64 // KiB
}

// runTimed runs one command through GNU time for its peak RSS (see
// measure: a vforked child's own rusage would show the runner's).
func runTimed(env []string, dir string, name string, args ...string) (timed, error) {
	rssFile, err := os.CreateTemp("", "qvm-bench-rss-")
	if err != nil {
		return timed{}, err
	}
	rssFile.Close()
	defer os.Remove(rssFile.Name())
	cmd := exec.Command("/usr/bin/time", append([]string{"-q", "-f", "%M", "-o", rssFile.Name(), name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	start := time.Now()
	out, err := cmd.CombinedOutput()
	el := time.Since(start)
	if err != nil {
		return timed{}, fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
	}
	var rss int64
	if data, err := os.ReadFile(rssFile.Name()); err == nil {
		fmt.Sscan(string(data), &rss)
	}
	return timed{el, rss}, nil
}

// refBackupScript writes a backup of one file or tree the reference way
// (spec backup.md §1-8): header and .hmac, qubes.xml, then
// `tar -Pc --sparse --xform | gzip | split` and one `scrypt enc` and
// `tar -cO --posix` per chunk, one after another.
// Args: parent base dir out pass qubes.xml; the member is dir/base.
const refBackupScript = `set -e +H
parent=$1; base=$2; dir=$3; out=$4; pass=$5
id=20260101T000000-1
printf 'version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=%s\n' $id > backup-header
echo "backup-header!$pass" | scrypt enc --logN 17 -r 8 -p 1 -P backup-header backup-header.hmac
tar -cO --posix backup-header backup-header.hmac > "$out"
cp "$6" qubes.xml
tar -c qubes.xml | gzip > qubes.xml.000
echo "$id!qubes.xml.000!$pass" | scrypt enc --logN 17 -r 8 -p 1 -P qubes.xml.000 qubes.xml.000.enc
tar -cO --posix qubes.xml.000.enc >> "$out"
mkdir -p "$dir"
tar -Pc --sparse -C "$parent" --xform="s:^$base:$dir/\0:" "$base" | gzip | split -b 100M -d -a 3 - "$dir/$base."
for f in $(ls "$dir/" | sort -V); do
  echo "$id!$dir/$f!$pass" | scrypt enc --logN 17 -r 8 -p 1 -P "$dir/$f" "$dir/$f.enc"
  rm "$dir/$f"
  tar -cO --posix "$dir/$f.enc" >> "$out"
  rm "$dir/$f.enc"
done
`

// refRestoreScript is its restore: `tar -i -x`, the header checked,
// `scrypt dec` per chunk, then `cat | gzip -d | tar -x`.
// Args: archive pass dir base.
const refRestoreScript = `set -e +H
in=$1; pass=$2; dir=$3; base=$4
id=20260101T000000-1
tar -i -xf "$in"
echo "backup-header!$pass" | scrypt dec -P backup-header.hmac backup-header.verified
cmp -s backup-header backup-header.verified
echo "$id!qubes.xml.000!$pass" | scrypt dec -P qubes.xml.000.enc | gzip -d | tar -x
rm qubes.xml.000.enc
for f in $(ls "$dir"/*.enc | sort -V); do
  echo "$id!${f%.enc}!$pass" | scrypt dec -P "$f" "${f%.enc}"
  rm "$f"
done
cat $(ls "$dir/$base".* | sort -V) | gzip -d | tar -x --sparse -f -
`

func benchBackupVolume(r *runner, i int, title string, size int64, fill func(*os.File, int64) error, params string) (string, error) {
	dir := filepath.Join(r.tmp, fmt.Sprintf("backup%d", i))
	src := filepath.Join(dir, "src")
	env := []string{"QVM_STATE_DIR=" + src, "QVM_CONFIG=/nonexistent", "QVM_RUN_DIR=" + filepath.Join(dir, "run")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("bench passphrase\n"), 0o600); err != nil {
		return "", err
	}
	if _, err := runTimed(env, dir, r.qvm, "init", "--reflink", "no"); err != nil {
		return "", err
	}
	// An AppVM: only its private volume is saved (its template is not
	// part of the backup and exists on the restoring host too).
	if _, err := runTimed(env, dir, r.qvm, "create", "-C", "TemplateVM", "-l", "black", "tpl"); err != nil {
		return "", err
	}
	if _, err := runTimed(env, dir, r.qvm, "create", "-l", "red", "-t", "tpl", "big"); err != nil {
		return "", err
	}
	img := filepath.Join(src, "appvms", "big", "private.img")
	f, err := os.OpenFile(img, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	if err := fill(f, size); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	if _, err := runTimed(env, dir, r.qvm, "prefs", "big", "include_in_backups", "True"); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "bench: backup %s\n", title)
	settle()
	qb, err := runTimed(env, dir, r.qvm, "backup", "-y", "-q", "-p", pw, "--scrypt-params", params, filepath.Join(dir, "qvm.backup"), "big")
	if err != nil {
		return "", err
	}
	refDir := filepath.Join(dir, "ref")
	os.MkdirAll(refDir, 0o755)
	settle()
	rb, err := runTimed(nil, refDir, "bash", "-c", refBackupScript, "bash", filepath.Dir(img), "private.img", "vm1", filepath.Join(dir, "ref.backup"), "bench passphrase", filepath.Join(src, "qubes.xml"))
	if err != nil {
		return "", err
	}
	// Restores are repeated, the two sides alternating, and the median
	// reported: they take seconds, and this VM's disk moves them by tens
	// of percent from one minute to the next.
	var qrs, rrs, synced, fss []timed
	for rep := 0; rep < r.restoreReps; rep++ {
		qr, rr, fs, err := restoreBoth(r, dir, img, title)
		if err != nil {
			return "", err
		}
		qrs, rrs, fss = append(qrs, qr), append(rrs, rr), append(fss, fs)
		synced = append(synced, timed{rr.el + fs.el, rr.rss})
	}
	qr, rr, rrSynced, fs := medianTimed(qrs), medianTimed(rrs), medianTimed(synced), medianTimed(fss)
	qs, _ := os.Stat(filepath.Join(dir, "qvm.backup"))
	rs, _ := os.Stat(filepath.Join(dir, "ref.backup"))
	row := func(step string, q, ref timed) string {
		return fmt.Sprintf("| %s | %s | %s (%s) | %s (%s) | %.1fx | %s | %s |\n", title, step,
			secs(q.el), rate(size, q.el), secs(ref.el), rate(size, ref.el), ref.el.Seconds()/q.el.Seconds(), mib(q.rss), mib(ref.rss))
	}
	out := row("backup", qb, rb) + row("restore (both on disk)", qr, rrSynced) +
		row(fmt.Sprintf("restore (the script without its final sync, median %s)", secs(fs.el)), qr, rr)
	out += fmt.Sprintf("| %s | archive size | %.1f MiB | %.1f MiB | | | |\n", title, float64(qs.Size())/(1<<20), float64(rs.Size())/(1<<20))
	return out, nil
}

// restoreBoth runs qvm restore into a fresh state dir and the reference
// script into a fresh directory, each after a sync, checks both volumes
// against img, and returns qvm's time, the script's, and that of the
// `sync FILE` of the script's volume.
func restoreBoth(r *runner, dir, img, title string) (qr, rr, fs timed, err error) {
	dst := filepath.Join(dir, "dst")
	denv := denvFor(dir)
	refOut := filepath.Join(dir, "refrestore")
	for _, d := range []string{dst, refOut, filepath.Join(dir, "run2")} {
		if err = os.RemoveAll(d); err != nil {
			return
		}
	}
	if _, err = runTimed(denv, dir, r.qvm, "init", "--reflink", "no"); err != nil {
		return
	}
	if _, err = runTimed(denv, dir, r.qvm, "create", "-C", "TemplateVM", "-l", "black", "tpl"); err != nil {
		return
	}
	settle()
	if qr, err = runTimed(denv, dir, r.qvm, "restore", "-q", "-p", filepath.Join(dir, "pw"), filepath.Join(dir, "qvm.backup")); err != nil {
		return
	}
	if !sameFile(img, filepath.Join(dst, "appvms", "big", "private.img")) {
		err = fmt.Errorf("qvm restore of %s: data differs", title)
		return
	}
	os.MkdirAll(refOut, 0o755)
	settle()
	if rr, err = runTimed(nil, refOut, "bash", "-c", refRestoreScript, "bash", filepath.Join(dir, "ref.backup"), "bench passphrase", "vm1", "private.img"); err != nil {
		return
	}
	// qvm restore returns with the volume on disk (it fsyncs it before
	// qubes.xml names the qube); the script leaves it in the page cache.
	// The same work on both sides: the script's time plus an fsync of
	// the volume it restored (coreutils `sync FILE`), timed right after.
	if fs, err = runTimed(nil, refOut, "sync", filepath.Join("vm1", "private.img")); err != nil {
		return
	}
	if !sameFile(img, filepath.Join(refOut, "vm1", "private.img")) {
		err = fmt.Errorf("reference restore of %s: data differs", title)
	}
	return
}

// medianTimed is the run of median time, with the largest RSS of all.
func medianTimed(ts []timed) timed {
	s := append([]timed(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i].el < s[j].el })
	m := s[len(s)/2]
	for _, t := range ts {
		m.rss = max(m.rss, t.rss)
	}
	return m
}

func denvFor(dir string) []string {
	return []string{"QVM_STATE_DIR=" + filepath.Join(dir, "dst"), "QVM_CONFIG=/nonexistent", "QVM_RUN_DIR=" + filepath.Join(dir, "run2")}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func rate(size int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MiB/s", float64(size)/(1<<20)/d.Seconds())
}

func sameFile(a, b string) bool {
	out1, err1 := exec.Command("sha256sum", a).Output()
	out2, err2 := exec.Command("sha256sum", b).Output()
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.Fields(string(out1))[0] == strings.Fields(string(out2))[0]
}

// missingTool is the section's text when a reference tool is missing.
func missingTool(tools ...string) string {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("skipped: %s missing (deps/backup.deb)\n", tool)
		}
	}
	return ""
}
