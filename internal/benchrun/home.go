package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
)

// benchHome measures a backup and a restore of dom0's home (a tree of
// many small files) next to the reference-style pipeline on the same
// tree with the same scrypt parameters: `tar -c --sparse --xform | gzip |
// split | scrypt enc` per chunk, and `scrypt dec` per chunk, then
// `gzip -d | tar -x` (refBackupScript, refRestoreScript).
func benchHome(r *runner) (string, error) {
	if msg := missingTool("scrypt", "tar", "gzip", "split"); msg != "" {
		return msg, nil
	}
	me, err := user.Current()
	if err != nil {
		return "", err
	}
	const params = "17:8:1"
	dir := filepath.Join(r.tmp, "home")
	defer os.RemoveAll(dir)
	parent := filepath.Join(dir, "src")
	home := filepath.Join(parent, me.Username)
	files, size, err := fillHome(home)
	if err != nil {
		return "", err
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("bench passphrase\n"), 0o600); err != nil {
		return "", err
	}
	env := []string{"QVM_STATE_DIR=" + filepath.Join(dir, "state"), "QVM_CONFIG=/nonexistent", "QVM_RUN_DIR=" + filepath.Join(dir, "run"),
		"QVM_DOM0_USER=" + me.Username, "QVM_DOM0_HOME=" + home}
	if _, err := runTimed(env, dir, r.qvm, "init", "--reflink", "no"); err != nil {
		return "", err
	}
	settle()
	qb, err := runTimed(env, dir, r.qvm, "backup", "-y", "-q", "-p", pw, "--scrypt-params", params, filepath.Join(dir, "qvm.backup"), "dom0")
	if err != nil {
		return "", err
	}
	refDir := filepath.Join(dir, "ref")
	os.MkdirAll(refDir, 0o755)
	settle()
	rb, err := runTimed(nil, refDir, "bash", "-c", refBackupScript, "bash", parent, me.Username, "dom0-home", filepath.Join(dir, "ref.backup"), "bench passphrase", filepath.Join(dir, "state", "qubes.xml"))
	if err != nil {
		return "", err
	}
	var qrs, rrs []timed
	for rep := 0; rep < r.restoreReps; rep++ {
		qr, rr, err := restoreHomeBoth(r, dir, rep, home, me.Username, pw)
		if err != nil {
			return "", err
		}
		qrs, rrs = append(qrs, qr), append(rrs, rr)
	}
	qr, rr := medianTimed(qrs), medianTimed(rrs)
	title := fmt.Sprintf("%d files, %d MiB", files, size>>20)
	var b strings.Builder
	fmt.Fprintf(&b, "dom0's home (%s of text-like files in nested directories) backed up with gzip and restored, scrypt parameters %s for both sides. qvm: `qvm backup -y dom0` and `qvm restore` (whole processes). Reference-style (header, qubes.xml, then the tree): `tar -Pc --sparse -C PARENT --xform=s:^USER:dom0-home/\\0: USER | gzip | split -b 100M`, then `scrypt enc` per chunk; restore: `tar -i -x`, `scrypt dec` per chunk, `cat | gzip -d | tar -x`. Each timed step starts after a `sync`; backups one run each, restores the median of %d runs of each side, alternating; neither side syncs the restored tree; RSS as above.\n\n", title, params, r.restoreReps)
	b.WriteString("| tree | step | qvm | reference-style | ratio | qvm peak RSS | reference peak RSS |\n|---|---|---|---|---|---|---|\n")
	row := func(step string, q, ref timed) {
		fmt.Fprintf(&b, "| %s | %s | %s (%s) | %s (%s) | %.1fx | %s | %s |\n", title, step,
			secs(q.el), rate(size, q.el), secs(ref.el), rate(size, ref.el), ref.el.Seconds()/q.el.Seconds(), mib(q.rss), mib(ref.rss))
	}
	row("backup", qb, rb)
	row("restore", qr, rr)
	return b.String(), nil
}

// restoreHomeBoth restores the home with qvm into a fresh state dir and
// home, then with the reference script into a fresh directory, each after
// a sync, and checks both trees against home. Each run gets directories of
// its own and nothing is deleted in between: ext4 searches long for a free
// inode right after thousands were freed (recently_deleted), which made
// every run after the first two to three times slower on both sides.
func restoreHomeBoth(r *runner, dir string, rep int, home, user, pw string) (qr, rr timed, err error) {
	sub := filepath.Join(dir, fmt.Sprintf("restore%d", rep))
	restoreHome := filepath.Join(sub, "restored-home")
	refOut := filepath.Join(sub, "refrestore")
	os.MkdirAll(restoreHome, 0o755)
	denv := []string{"QVM_STATE_DIR=" + filepath.Join(sub, "dst"), "QVM_CONFIG=/nonexistent", "QVM_RUN_DIR=" + filepath.Join(sub, "run"),
		"QVM_DOM0_USER=" + user, "QVM_DOM0_HOME=" + restoreHome}
	if _, err = runTimed(denv, dir, r.qvm, "init", "--reflink", "no"); err != nil {
		return
	}
	settle()
	if qr, err = runTimed(denv, dir, r.qvm, "restore", "-q", "-p", pw, filepath.Join(dir, "qvm.backup")); err != nil {
		return
	}
	got, _ := filepath.Glob(filepath.Join(restoreHome, "home-restore-*", "dom0-home", user))
	if len(got) != 1 || !sameTree(home, got[0]) {
		err = fmt.Errorf("qvm restore of the home: trees differ (%v)", got)
		return
	}
	os.MkdirAll(refOut, 0o755)
	settle()
	if rr, err = runTimed(nil, refOut, "bash", "-c", refRestoreScript, "bash", filepath.Join(dir, "ref.backup"), "bench passphrase", "dom0-home", user); err != nil {
		return
	}
	if !sameTree(home, filepath.Join(refOut, "dom0-home", user)) {
		err = fmt.Errorf("reference restore of the home: trees differ")
	}
	return
}

// fillHome writes a home-like tree: 200 directories of text-like files
// from 1 to 32 KiB, and a few larger ones.
func fillHome(home string) (files int, size int64, err error) {
	rnd := rand.New(rand.NewSource(3))
	words := strings.Fields("alias export config profile desktop mail notes draft report qube vm backup music photo cache thumbnail index history bookmark")
	for d := 0; d < 200; d++ {
		sub := filepath.Join(home, fmt.Sprintf("dir%03d", d/20), fmt.Sprintf("sub%02d", d%20))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return 0, 0, err
		}
		for f := 0; f < 50; f++ {
			n := 1024 + rnd.Intn(31*1024)
			if f == 0 && d%10 == 0 {
				n = 8 << 20
			}
			var sb strings.Builder
			for sb.Len() < n {
				fmt.Fprintf(&sb, "%d %s %s %s\n", rnd.Intn(100000), words[rnd.Intn(len(words))], words[rnd.Intn(len(words))], words[rnd.Intn(len(words))])
			}
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("file%02d.txt", f)), []byte(sb.String()[:n]), 0o644); err != nil {
				return 0, 0, err
			}
			files++
			size += int64(n)
		}
	}
	return files, size, nil
}

// sameTree compares two trees with diff -r (contents and names).
func sameTree(a, b string) bool {
	return exec.Command("diff", "-r", "-q", "--no-dereference", a, b).Run() == nil
}
