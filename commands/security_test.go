package commands

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/qvm-dev/qvm/backup"
)

// secState makes a state dir with a template, an AppVM "work" whose
// private volume holds data, and a passphrase file.
func secState(t *testing.T, root string, data []byte) (dir, pw string) {
	t.Helper()
	dir = filepath.Join(root, "state")
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	runQvm(t, dir, "create", "-l", "red", "-t", "tpl", "work")
	src := filepath.Join(root, "data")
	hMust(t, os.WriteFile(src, data, 0o644))
	runQvm(t, dir, "volume", "import", "work:private", src)
	pw = filepath.Join(root, "pw")
	hMust(t, os.WriteFile(pw, []byte(secretPass+"\n"), 0o600))
	return dir, pw
}

const secretPass = "S3cret-Passphrase-Never-Shown"

// State files get the modes the spec gives them whatever the umask:
// qubes.xml 0660 (state.md), firewall.xml 0664 (firewall.md), copied and
// imported volume images 0600 (storage.md, persisting a new file); a
// backup archive is readable by its owner only; nothing in the state is
// world-writable.
func TestStateFileModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	dir, pw := secState(t, root, []byte("private data"))
	runQvm(t, dir, "prefs", "work", "memory", "512")
	runQvm(t, dir, "firewall", "work", "add", "accept", "10.0.0.0/8")
	runQvm(t, dir, "clone", "work", "copy")
	dest := filepath.Join(root, "bk")
	hMust(t, os.Mkdir(dest, 0o755))
	runQvm(t, dir, "backup", "-y", "-q", "-p", pw, "--scrypt-params", "10:8:1", dest, "work")
	want := map[string]fs.FileMode{
		"qubes.xml":                0o660,
		"appvms/work/firewall.xml": 0o664,
		"appvms/work/private.img":  0o600, // imported
		"appvms/copy/private.img":  0o600, // cloned
		"appvms/copy/firewall.xml": 0o664,
	}
	for rel, mode := range want {
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if got := fi.Mode().Perm(); got != mode {
			t.Errorf("%s: mode %04o, want %04o", rel, got, mode)
		}
	}
	ents, err := os.ReadDir(dest)
	hMust(t, err)
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("backup archive %s: mode %04o, want no group or other access", e.Name(), fi.Mode().Perm())
		}
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if fi.Mode().Perm()&0o002 != 0 && !d.IsDir() {
			t.Errorf("%s is world-writable (%04o)", p, fi.Mode().Perm())
		}
		return nil
	})
}

// The passphrase never appears in the argv or the environment of any
// program qvm runs (the compression filter is replaced by a wrapper that
// records both), nor in anything qvm prints at the highest verbosity,
// for backup, restore and a restore with a wrong passphrase.
func TestNoPassphraseLeaks(t *testing.T) {
	xz, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("xz missing (the filter program whose argv and environment are recorded)")
	}
	root := t.TempDir()
	dir, pw := secState(t, root, bytes.Repeat([]byte("volume data "), 4096))
	bin := filepath.Join(root, "bin")
	rec := filepath.Join(root, "filter-calls")
	hMust(t, os.Mkdir(bin, 0o755))
	wrapper := "#!/bin/sh\n{ echo \"argv: $0 $*\"; env; } >> " + rec + "\nexec " + xz + " \"$@\"\n"
	hMust(t, os.WriteFile(filepath.Join(bin, "xz"), []byte(wrapper), 0o755))
	path := "PATH=" + bin + ":" + os.Getenv("PATH")
	dest := filepath.Join(root, "bk")
	hMust(t, os.Mkdir(dest, 0o755))
	var printed bytes.Buffer
	run := func(wantOK bool, args ...string) {
		t.Helper()
		cmd := qvmProc(dir, args...)
		cmd.Env = append(cmd.Env, path)
		out, err := cmd.CombinedOutput()
		printed.Write(out)
		if (err == nil) != wantOK {
			t.Fatalf("qvm %v: %v\n%s", args, err, out)
		}
	}
	run(true, "-v", "-v", "backup", "-y", "-Z", "xz", "-p", pw, "--scrypt-params", "10:8:1", dest, "work")
	ents, _ := os.ReadDir(dest)
	if len(ents) != 1 {
		t.Fatalf("backup made %d files", len(ents))
	}
	archive := filepath.Join(dest, ents[0].Name())
	runQvm(t, dir, "remove", "-f", "work")
	run(true, "-v", "-v", "restore", "-p", pw, archive)
	wrong := filepath.Join(root, "wrong")
	hMust(t, os.WriteFile(wrong, []byte(secretPass+"-but-wrong\n"), 0o600))
	run(false, "-v", "-v", "restore", "-p", wrong, archive)
	calls, err := os.ReadFile(rec)
	if err != nil {
		t.Fatalf("the xz filter was never run: %v", err)
	}
	if !bytes.Contains(calls, []byte("argv: ")) || !bytes.Contains(calls, []byte("-d")) {
		t.Fatalf("filter calls recorded: %s", calls)
	}
	if bytes.Contains(calls, []byte("S3cret")) {
		t.Errorf("the passphrase reached a child process's argv or environment:\n%s", calls)
	}
	if bytes.Contains(printed.Bytes(), []byte("S3cret")) {
		t.Errorf("the passphrase was printed:\n%s", printed.Bytes())
	}
}

// craftedBackup returns a valid uncompressed backup of work (one chunk for
// its private volume) with that chunk's plaintext replaced by inner:
// correctly sealed with the passphrase, so the restore gets past every
// authentication and must judge the inner tar itself.
func craftedBackup(t *testing.T, root, dir, pw string, inner []byte, out string) {
	t.Helper()
	dest := filepath.Join(root, "good")
	if _, err := os.Stat(dest); err != nil {
		hMust(t, os.Mkdir(dest, 0o755))
		runQvm(t, dir, "backup", "-y", "-q", "--no-compress", "-p", pw, "--scrypt-params", "10:8:1", dest, "work")
	}
	ents, _ := os.ReadDir(dest)
	ms := readOuter(t, filepath.Join(dest, ents[0].Name()))
	hdr := string(ms[0].data)
	id := strings.TrimSpace(hdr[strings.Index(hdr, "backup-id=")+len("backup-id="):])
	id = strings.SplitN(id, "\n", 2)[0]
	found := false
	for i, m := range ms {
		if strings.HasSuffix(m.name, "/private.img.000.enc") {
			chunk := strings.TrimSuffix(m.name, ".enc")
			ms[i].data = seal(t, id+"!"+chunk+"!"+secretPass, inner)
			found = true
		}
	}
	if !found {
		t.Fatalf("no private.img.000.enc in %v", ms)
	}
	writeOuter(t, out, ms)
}

// A restore never writes outside its target, whatever the inner tar of an
// authenticated chunk holds: names with "..", absolute names, symlinks and
// hard links in place of the volume, extra members after it. Each is
// refused, qubes.xml stays as it was and no file appears anywhere (the
// whole test tree is compared), not even the staging directory.
func TestRestoreNeverWritesOutside(t *testing.T) {
	root := t.TempDir()
	dir, pw := secState(t, root, []byte("private data of work"))
	outside := filepath.Join(root, "outside")
	hMust(t, os.Mkdir(outside, 0o755))
	prefix := ""
	ms0 := func() string {
		dest := filepath.Join(root, "good")
		ents, _ := os.ReadDir(dest)
		for _, m := range readOuter(t, filepath.Join(dest, ents[0].Name())) {
			if strings.HasSuffix(m.name, "/private.img.000.enc") {
				return strings.TrimSuffix(m.name, "private.img.000.enc")
			}
		}
		return ""
	}
	craftedBackup(t, root, dir, pw, nil, filepath.Join(root, "probe"))
	prefix = ms0() // "vmN/"
	want := prefix + "private.img"
	tarOf := func(hs ...*tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len("evil data"))
			}
			h.Mode = 0o644
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte("evil data"))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	cases := map[string][]byte{
		"dotdot name":      tarOf(&tar.Header{Name: prefix + "../../../outside/dotdot", Typeflag: tar.TypeReg}),
		"absolute name":    tarOf(&tar.Header{Name: outside + "/absolute", Typeflag: tar.TypeReg}),
		"symlink":          tarOf(&tar.Header{Name: want, Typeflag: tar.TypeSymlink, Linkname: outside + "/symlink-target"}),
		"hardlink":         tarOf(&tar.Header{Name: want, Typeflag: tar.TypeLink, Linkname: outside + "/hardlink-target"}),
		"pax long name":    tarOf(&tar.Header{Name: prefix + "../../../outside/" + strings.Repeat("p", 120), Typeflag: tar.TypeReg, Format: tar.FormatPAX}),
		"gnu long name":    tarOf(&tar.Header{Name: prefix + "../../../outside/" + strings.Repeat("g", 120), Typeflag: tar.TypeReg, Format: tar.FormatGNU}),
		"extra member":     tarOf(&tar.Header{Name: want, Typeflag: tar.TypeReg}, &tar.Header{Name: "../outside/extra", Typeflag: tar.TypeReg}),
		"directory":        tarOf(&tar.Header{Name: want + "/", Typeflag: tar.TypeDir}),
		"link then member": tarOf(&tar.Header{Name: "x", Typeflag: tar.TypeSymlink, Linkname: outside}, &tar.Header{Name: "x/escape", Typeflag: tar.TypeReg}),
	}
	runQvm(t, dir, "remove", "-f", "work")
	xml := filepath.Join(dir, "qubes.xml")
	before, _ := os.ReadFile(xml)
	for name, inner := range cases {
		arch := filepath.Join(root, "crafted")
		craftedBackup(t, root, dir, pw, inner, arch)
		treeBefore := listTree(t, root)
		out, err := qvmProc(dir, "restore", "-p", pw, arch).CombinedOutput()
		if err == nil {
			t.Errorf("%s: restore accepted it:\n%s", name, out)
			runQvm(t, dir, "remove", "-f", "work")
		}
		after, _ := os.ReadFile(xml)
		if !bytes.Equal(before, after) {
			t.Errorf("%s: qubes.xml changed", name)
		}
		if tree := listTree(t, root); tree != treeBefore {
			t.Errorf("%s: files appeared or vanished:\nbefore:\n%s\nafter:\n%s", name, treeBefore, tree)
		}
		t.Logf("%s: %s", name, lastLine(out))
		os.Remove(arch)
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// A small archive that expands past the set ratio is stopped: 80 MiB of
// written zeros make a backup of well under 1 MiB; restoring it with
// --max-expansion 100 is refused as a decompression bomb, leaving
// qubes.xml and the state as they were; with the default limit (above
// gzip's largest ratio) the same backup restores.
func TestRestoreDecompressionLimit(t *testing.T) {
	root := t.TempDir()
	dir, pw := secState(t, root, []byte("x"))
	runQvm(t, dir, "volume", "resize", "work:private", "96MiB")
	// Written zeros, not holes: the backup carries them as data.
	f, err := os.OpenFile(filepath.Join(dir, "appvms/work/private.img"), os.O_WRONLY, 0)
	hMust(t, err)
	_, err = f.Write(make([]byte, 80<<20))
	hMust(t, err)
	f.Close()
	dest := filepath.Join(root, "bk")
	hMust(t, os.Mkdir(dest, 0o755))
	runQvm(t, dir, "backup", "-y", "-q", "-p", pw, "--scrypt-params", "10:8:1", dest, "work")
	ents, _ := os.ReadDir(dest)
	arch := filepath.Join(dest, ents[0].Name())
	fi, _ := os.Stat(arch)
	if fi.Size() > 1<<20 {
		t.Fatalf("backup of zeros is %d bytes, want a small archive", fi.Size())
	}
	runQvm(t, dir, "remove", "-f", "work")
	xml := filepath.Join(dir, "qubes.xml")
	before, _ := os.ReadFile(xml)
	out, err := qvmProc(dir, "restore", "-p", pw, "--max-expansion", "100", arch).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "decompression bomb") || !strings.Contains(string(out), "private.img") {
		t.Fatalf("restore past the ratio: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(xml)
	if !bytes.Equal(before, after) {
		t.Fatal("qubes.xml changed by a refused restore")
	}
	checkClean(t, dir)
	t.Logf("%d-byte archive of 80 MiB: %s", fi.Size(), lastLine(out))
	runQvm(t, dir, "restore", "-p", pw, arch)
	checkClean(t, dir)
}

// Only whitelisted compression filters run: qvm backup refuses any other
// -Z (paths, arguments, shell syntax) before writing anything, and a
// backup header naming one is refused by the reader, so no archive can
// make a restore run a program of its choosing.
func TestCompressionFilterWhitelist(t *testing.T) {
	root := t.TempDir()
	dir, pw := secState(t, root, []byte("x"))
	dest := filepath.Join(root, "bk")
	hMust(t, os.Mkdir(dest, 0o755))
	hostile := []string{"/bin/sh", "sh", "gzip -c", "../gzip", "xz;id", "$(id)", "/usr/bin/xz"}
	for _, z := range hostile {
		out, err := qvmProc(dir, "backup", "-y", "-q", "-Z", z, "-p", pw, dest, "work").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "is not one the Qubes restore accepts") {
			t.Errorf("qvm backup -Z %q: %v\n%s", z, err, out)
		}
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Errorf("a refused backup wrote %s", ents[0].Name())
	}
	for _, z := range append(hostile, "rot13", "cat") {
		h := "version=4\nencrypted=True\ncompressed=True\ncompression-filter=" + z + "\nhmac-algorithm=scrypt\nbackup-id=20260101T000000-1\n"
		if _, err := backup.ParseHeader([]byte(h), ""); err == nil {
			t.Errorf("a backup header with compression-filter=%q accepted", z)
		}
	}
	for _, z := range []string{"gzip", "bzip2", "xz"} {
		h := "version=4\nencrypted=True\ncompressed=True\ncompression-filter=" + z + "\nhmac-algorithm=scrypt\nbackup-id=20260101T000000-1\n"
		if _, err := backup.ParseHeader([]byte(h), ""); err != nil {
			t.Errorf("stock filter %s refused: %v", z, err)
		}
	}
}
