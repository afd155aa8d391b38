package commands

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// smallFS makes and loop-mounts a 24 MiB ext4 filesystem (no blocks
// reserved for root, so root fills it too) and returns its mount point.
func smallFS(t *testing.T) string {
	t.Helper()
	if !canLoopMount("ext4") {
		t.Skip("needs root, mkfs.ext4 and a free loop device to mount a small filesystem")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	hMust(t, os.Mkdir(mnt, 0o755))
	f, err := os.Create(img)
	hMust(t, err)
	hMust(t, f.Truncate(24<<20))
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount ext4 (no free loop device?): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// fill writes filler files on mnt until the filesystem refuses a single
// block more, and returns a function that frees the space again.
func fill(t *testing.T, mnt string) (free func()) {
	t.Helper()
	var names []string
	for i, chunk := range []int{1 << 20, 64 << 10, 1 << 10} {
		name := filepath.Join(mnt, "filler"+string(rune('0'+i)))
		names = append(names, name)
		f, err := os.Create(name)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		hMust(t, err)
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
		f.Close()
	}
	return func() {
		for _, n := range names {
			os.Remove(n)
		}
	}
}

// qvmFails runs qvm and wants exit 1 with "no space left" and where in the message.
func qvmFails(t *testing.T, dir, where string, args ...string) string {
	t.Helper()
	cmd := qvmProc(dir, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("qvm %v on a full filesystem: %v, want exit 1\n%s%s", args, err, out, stderr.Bytes())
	}
	// The error is one line on stderr (progress lines aside).
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	msg := lines[len(lines)-1]
	if !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, where) {
		t.Fatalf("qvm %v: message %q does not say no space left and where (%s)", args, msg, where)
	}
	t.Logf("qvm %s: %s", args[0], msg)
	return msg
}

func checkClean(t *testing.T, dir string) {
	t.Helper()
	if out, err := qvmProc(dir, "check").CombinedOutput(); err != nil {
		t.Fatalf("qvm check after the failures: %v\n%s", err, out)
	}
}

// The state dir on a full filesystem: prefs and create fail with a message
// naming qubes.xml's directory, qubes.xml keeps its old bytes, no temp file
// or half-made qube directory is left, and once space is freed the same
// commands work.
func TestDiskFullStateDir(t *testing.T) {
	mnt := smallFS(t)
	dir := filepath.Join(mnt, "state")
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	runQvm(t, dir, "create", "-l", "red", "-t", "tpl", "work")
	xml := filepath.Join(dir, "qubes.xml")
	before, err := os.ReadFile(xml)
	hMust(t, err)
	free := fill(t, mnt)

	msg := qvmFails(t, dir, dir, "prefs", "work", "memory", "900")
	if !strings.Contains(msg, "cannot write "+xml) || !strings.Contains(msg, "old file is unchanged") {
		t.Errorf("prefs message %q: want qubes.xml named and the old file said unchanged", msg)
	}
	qvmFails(t, dir, dir, "create", "-l", "red", "-t", "tpl", "new")
	qvmFails(t, dir, dir, "tags", "work", "add", "x")
	qvmFails(t, dir, filepath.Join(dir, "appvms/work/firewall.xml"), "firewall", "work", "add", "accept", "10.0.0.0/8")
	after, err := os.ReadFile(xml)
	hMust(t, err)
	if !bytes.Equal(before, after) {
		t.Fatal("qubes.xml changed although every write failed")
	}
	hMiss(t, filepath.Join(dir, "appvms/new"))
	checkClean(t, dir)
	// Reads still work on a full disk.
	if got := strings.TrimSpace(runQvm(t, dir, "prefs", "work", "memory")); got != "400" {
		t.Errorf("memory %q on a full disk, want the old 400", got)
	}

	free()
	runQvm(t, dir, "prefs", "work", "memory", "900")
	runQvm(t, dir, "create", "-l", "red", "-t", "tpl", "new")
	checkClean(t, dir)
}

// A pool on a full filesystem: importing more data than fits and cloning a
// qube with data fail naming the pool's directory; the old volume keeps
// its bytes, no import or clone file is left, qubes.xml is unchanged.
func TestDiskFullPool(t *testing.T) {
	mnt := smallFS(t)
	dir := t.TempDir()
	pool := filepath.Join(mnt, "pool")
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "pool", "add", "small", "file", "-o", "dir_path="+pool)
	runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	runQvm(t, dir, "create", "-l", "red", "-t", "tpl", "-P", "small", "work")
	old := filepath.Join(dir, "old.dat")
	writeRandom(t, old, 4<<20)
	runQvm(t, dir, "volume", "import", "work:private", old)
	big := filepath.Join(dir, "big.dat")
	writeRandom(t, big, 8<<20)
	xml := filepath.Join(dir, "qubes.xml")
	before, err := os.ReadFile(xml)
	hMust(t, err)
	free := fill(t, mnt)

	qvmFails(t, dir, pool, "volume", "import", "work:private", big)
	qvmFails(t, dir, pool, "clone", "work", "copy")
	after, err := os.ReadFile(xml)
	hMust(t, err)
	if !bytes.Equal(before, after) {
		t.Fatal("qubes.xml changed although the storage steps failed")
	}
	img := filepath.Join(pool, "appvms/work/private.img")
	if !sameContent(t, old, img) {
		t.Fatal("the old private volume lost its data in a failed import")
	}
	hMiss(t, filepath.Join(pool, "appvms/work/private-import.img"), filepath.Join(pool, "appvms/copy"))
	checkClean(t, dir)

	free()
	runQvm(t, dir, "volume", "import", "work:private", big)
	if !sameContent(t, big, img) {
		t.Fatal("import after freeing space: data differs")
	}
	runQvm(t, dir, "clone", "work", "copy")
	checkClean(t, dir)
}

// A backup to a full destination fails naming the destination and leaves
// no partial archive there; the state is untouched.
func TestDiskFullBackupDest(t *testing.T) {
	mnt := smallFS(t)
	dir := t.TempDir()
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	runQvm(t, dir, "create", "-l", "red", "-t", "tpl", "work")
	data := filepath.Join(dir, "data")
	writeRandom(t, data, 6<<20)
	runQvm(t, dir, "volume", "import", "work:private", data)
	pw := filepath.Join(dir, "pw")
	hMust(t, os.WriteFile(pw, []byte("stress passphrase\n"), 0o600))
	dest := filepath.Join(mnt, "backups")
	hMust(t, os.Mkdir(dest, 0o755))
	free := fill(t, mnt)
	qvmFails(t, dir, dest, "backup", "-y", "-p", pw, "--scrypt-params", "10:8:1", dest, "work")
	ents, err := os.ReadDir(dest)
	hMust(t, err)
	if len(ents) != 0 {
		t.Fatalf("a failed backup left %v in the destination", ents[0].Name())
	}
	checkClean(t, dir)
	free()
	runQvm(t, dir, "backup", "-y", "-p", pw, "--scrypt-params", "10:8:1", dest, "work")
}

func writeRandom(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	hMust(t, err)
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		t.Fatal(err)
	}
}

// sameContent compares a's bytes with the start of b (a volume may be
// longer than the data imported into it, the rest being zeros).
func sameContent(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	hMust(t, err)
	f, err := os.Open(b)
	hMust(t, err)
	defer f.Close()
	y := make([]byte, len(x))
	if _, err := io.ReadFull(f, y); err != nil {
		return false
	}
	return bytes.Equal(x, y)
}

func hMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// hMiss wants none of paths to exist.
func hMiss(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists, want it gone", p)
		}
	}
}
