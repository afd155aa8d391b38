package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// makeHome builds a home directory with every kind of entry a tree
// member can be.
func makeHome(t *testing.T, dir string) {
	t.Helper()
	long := strings.Repeat("d", 120)
	for _, d := range []string{".config/app", "deep/" + long, "ro", "empty"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(".bashrc", "alias ll='ls -l'\n", 0o644)
	write(".config/app/x.conf", "key=value\n", 0o600)
	write("deep/"+long+"/f", "deep\n", 0o644)
	write("ünïcode", "ü\n", 0o644)
	write("ro/f", "read only\n", 0o444)
	write("suid", "#!/bin/sh\n", 0o755)
	os.Chmod(filepath.Join(dir, "suid"), 0o4755)
	makeVolume(t, filepath.Join(dir, "sparse.img"), 8<<20, map[int64]int{3 << 20: 5000})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(".bashrc", filepath.Join(dir, "rel-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "abs-link")))
	must(os.Link(filepath.Join(dir, ".bashrc"), filepath.Join(dir, "hard")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	must(os.Chmod(filepath.Join(dir, "ro"), 0o555))
	old := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, ".bashrc"), old, old))
	must(os.Chtimes(filepath.Join(dir, "deep"), old, old))
}

// treeEntry is what a comparison looks at.
type treeEntry struct {
	kind  fs.FileMode
	perm  fs.FileMode
	data  string // file content hash or link target
	mtime int64
	ino   uint64
}

func listTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := treeEntry{kind: fi.Mode().Type(), perm: fi.Mode().Perm(), ino: fi.Sys().(*syscall.Stat_t).Ino}
		switch {
		case fi.Mode().IsRegular():
			e.data = fmt.Sprintf("%x", fileSum(t, p))
			e.mtime = fi.ModTime().Unix()
		case fi.Mode()&fs.ModeSymlink != 0:
			e.data, _ = os.Readlink(p)
		case fi.IsDir():
			e.mtime = fi.ModTime().Unix()
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, got, want map[string]treeEntry, rootMtime bool) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, g := want[n], got[n]
		if _, ok := got[n]; !ok {
			t.Errorf("%s: missing", n)
			continue
		}
		if n == "." && !rootMtime {
			w.mtime, g.mtime = 0, 0
		}
		if g.kind != w.kind || g.perm != w.perm || g.data != w.data || g.mtime != w.mtime {
			t.Errorf("%s: got %v %v %q mtime %d, want %v %v %q mtime %d", n, g.kind, g.perm, g.data, g.mtime, w.kind, w.perm, w.data, w.mtime)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("%s: unexpected", n)
		}
	}
	if got["hard"].ino != got[".bashrc"].ino {
		t.Error("hard and .bashrc are not one file any more")
	}
}

func treeSink(t *testing.T, root string, prefix string) (OpenFunc, *[]string) {
	var warnings []string
	open := func(name string, size int64) (io.WriteCloser, error) {
		if size != -1 {
			return nil, fmt.Errorf("%s: size %d for a tree", name, size)
		}
		return NewTreeSink(context.Background(), root, TreeOptions{Prefix: prefix, UID: -1, GID: -1,
			Warn: func(s string) { warnings = append(warnings, s) }}), nil
	}
	return open, &warnings
}

func extractTestBackup(t *testing.T, path string, open OpenFunc) error {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := OpenArchive(context.Background(), f, ReadOptions{Passphrase: "pass word"})
	if err != nil {
		return err
	}
	return a.Extract(context.Background(), func(string) bool { return true }, open)
}

// The home tree goes through qvm's own writer and reader unchanged, and
// through GNU tar (the emergency procedure) too.
func TestHomeTreeRoundTrip(t *testing.T) {
	home := filepath.Join(t.TempDir(), "user")
	makeHome(t, home)
	want := listTree(t, home)
	// The restore drops setuid; GNU tar run by root keeps it.
	noSUID := map[string]treeEntry{}
	for k, v := range want {
		noSUID[k] = v
	}
	e := noSUID["suid"]
	e.perm &^= fs.ModeSetuid
	noSUID["suid"] = e

	for _, filter := range []string{"gzip", "bzip2", ""} {
		t.Run("filter-"+filter, func(t *testing.T) {
			work := t.TempDir()
			out := filepath.Join(work, "backup")
			var warns []string
			writeTestBackup(t, out, []Qube{{Name: "dom0", Files: []File{{Name: "dom0-home/user", Tree: home}}}},
				Options{Compressed: filter != "", Filter: filter, ChunkSize: 64 << 10, Warn: func(s string) { warns = append(warns, s) }})
			if len(warns) > 0 {
				t.Errorf("warnings: %q", warns)
			}
			dst := t.TempDir()
			open, ws := treeSink(t, dst, "dom0-home/user")
			if err := extractTestBackup(t, out, open); err != nil {
				t.Fatal(err)
			}
			if len(*ws) > 0 {
				t.Errorf("restore warnings: %q", *ws)
			}
			got := listTree(t, filepath.Join(dst, "dom0-home/user"))
			compareTrees(t, got, treeMap(noSUID), false)
			// Holes stay holes.
			var st syscall.Stat_t
			syscall.Stat(filepath.Join(dst, "dom0-home/user/sparse.img"), &st)
			if st.Blocks*512 > 1<<20 {
				t.Errorf("sparse.img uses %d bytes on disk after restore", st.Blocks*512)
			}
		})
	}

	t.Run("emergency-procedure", func(t *testing.T) {
		needTool(t, "scrypt", "tar", "gzip")
		work := t.TempDir()
		out := filepath.Join(work, "backup")
		writeTestBackup(t, out, []Qube{{Name: "dom0", Files: []File{{Name: "dom0-home/user", Tree: home}}}},
			Options{Compressed: true, ChunkSize: 64 << 10})
		cmd := exec.Command("bash", "-c", emergencyScript, "bash", out, "pass word", "gzip -d", "dom0-home", "user")
		cmd.Dir = work
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("emergency procedure: %v\n%s", err, b)
		}
		compareTrees(t, listTree(t, filepath.Join(work, "dom0-home/user")), want, false)
	})
}

func treeMap(m map[string]treeEntry) map[string]treeEntry { return m }

// A home archived the reference way (GNU tar, --sparse, the xform, gnu
// format: old GNU sparse members and long-name records) is restored.
func TestHomeTreeFromReference(t *testing.T) {
	needTool(t, "scrypt", "tar", "gzip", "split", "bash")
	parent := t.TempDir()
	home := filepath.Join(parent, "user")
	makeHome(t, home)
	want := listTree(t, home)
	e := want["suid"]
	e.perm &^= fs.ModeSetuid
	want["suid"] = e
	work := t.TempDir()
	os.MkdirAll(filepath.Join(work, "meta"), 0o755)
	os.WriteFile(filepath.Join(work, "meta/qubes.xml"), []byte("<qubes/>\n"), 0o644)
	script := strings.Replace(referenceScript, `mkdir -p vm5
tar -Pc --sparse $fmt -C src --xform=s:^private.img:vm5/\\0: private.img | $filter | split -b "$chunk" -d -a 3 - vm5/private.img.
for f in $(ls vm5/ | sort -V); do
  enc "vm5/$f" "$id!vm5/$f!$pass"
  tar -cO --posix "vm5/$f.enc" >> "$out"
done`, `mkdir -p dom0-home
tar -Pc --sparse -C "$HOMEPARENT" --xform=s:^user:dom0-home/\\0: user | $filter | split -b "$chunk" -d -a 3 - dom0-home/user.
for f in $(ls dom0-home/ | sort -V); do
  enc "dom0-home/$f" "$id!dom0-home/$f!$pass"
  tar -cO --posix "dom0-home/$f.enc" >> "$out"
done`, 1)
	if script == referenceScript {
		t.Fatal("reference script changed; update this test")
	}
	archive := filepath.Join(work, "backup")
	cmd := exec.Command("bash", "-c", script, "bash", archive, "pass word", "gzip", "64K", "", "gzip", "True")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "HOMEPARENT="+parent)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference pipeline: %v\n%s", err, out)
	}
	dst := t.TempDir()
	open, _ := treeSink(t, dst, "dom0-home/user")
	if err := extractTestBackup(t, archive, open); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, listTree(t, filepath.Join(dst, "dom0-home/user")), want, false)
}

// hostileTree is an inner tar built member by member.
func hostileTree(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	for _, h := range hdrs {
		if h.Mode == 0 {
			h.Mode = 0o644
		}
	}
	return hostileTreeSeed(hdrs...)
}

// Nothing a crafted tree holds gets written outside the destination.
func TestExtractTreeRefusals(t *testing.T) {
	outside := t.TempDir()
	dir := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755} }
	file := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeReg, Size: 3} }
	for _, tc := range []struct {
		name string
		hdrs []*tar.Header
		want string
	}{
		{"parent", []*tar.Header{dir("dom0-home/u/"), file("dom0-home/u/../../x")}, "path component"},
		{"absolute", []*tar.Header{file("/" + outside + "/x")}, "outside dom0-home/u/"},
		{"other-user", []*tar.Header{file("dom0-home/v/x")}, "outside dom0-home/u/"},
		{"prefix-lookalike", []*tar.Header{file("dom0-home/uu/x")}, "outside dom0-home/u/"},
		{"dot", []*tar.Header{file("dom0-home/u/./x")}, "path component"},
		{"empty-component", []*tar.Header{file("dom0-home/u//x")}, "path component"},
		{"through-symlink", []*tar.Header{dir("dom0-home/u/"),
			{Name: "dom0-home/u/l", Typeflag: tar.TypeSymlink, Linkname: outside},
			file("dom0-home/u/l/x")}, "is not a directory (a symlink is never followed)"},
		{"symlink-then-overwrite", []*tar.Header{dir("dom0-home/u/"),
			{Name: "dom0-home/u/l", Typeflag: tar.TypeSymlink, Linkname: outside + "/x"},
			file("dom0-home/u/l")}, "appears twice"},
		{"hardlink-outside", []*tar.Header{dir("dom0-home/u/"),
			{Name: "dom0-home/u/h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}, "outside dom0-home/u/"},
		{"hardlink-to-symlink", []*tar.Header{dir("dom0-home/u/"),
			{Name: "dom0-home/u/l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
			{Name: "dom0-home/u/h", Typeflag: tar.TypeLink, Linkname: "dom0-home/u/l"}}, "not an earlier regular file"},
		{"hardlink-parent", []*tar.Header{dir("dom0-home/u/"),
			{Name: "dom0-home/u/h", Typeflag: tar.TypeLink, Linkname: "dom0-home/u/../../etc/passwd"}}, "path component"},
		{"duplicate", []*tar.Header{file("dom0-home/u/f"), file("dom0-home/u/f")}, "appears twice"},
		{"file-over-dir", []*tar.Header{dir("dom0-home/u/d/"), file("dom0-home/u/d")}, "appears twice"},
		{"dir-over-file", []*tar.Header{file("dom0-home/u/d"), dir("dom0-home/u/d/")}, "not a directory"},
		{"over-size", []*tar.Header{file("dom0-home/u/a"), {Name: "dom0-home/u/b", Typeflag: tar.TypeReg, Size: 1 << 20}}, "more than the 1000 bytes its backup-size allows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			_, err := ExtractTree(context.Background(), bytes.NewReader(hostileTree(t, tc.hdrs...)), root, TreeOptions{Prefix: "dom0-home/u", UID: -1, GID: -1, MaxBytes: 1000})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) > 0 {
				t.Fatalf("written outside: %v", ents)
			}
			if _, err := os.Stat("/etc/passwd"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Devices are left out with a warning; modes lose setuid; ownership goes
// to the given user.
func TestExtractTreeDevicesAndOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	root := t.TempDir()
	data := hostileTree(t,
		&tar.Header{Name: "dom0-home/u/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "dom0-home/u/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3},
		&tar.Header{Name: "dom0-home/u/s", Typeflag: tar.TypeReg, Size: 3, Mode: 0o6755},
		&tar.Header{Name: "dom0-home/u/sub/f", Typeflag: tar.TypeReg, Size: 3},
	)
	var warns []string
	st, err := ExtractTree(context.Background(), bytes.NewReader(data), root, TreeOptions{Prefix: "dom0-home/u", UID: 65534, GID: 65534,
		Warn: func(s string) { warns = append(warns, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 1 || len(warns) != 1 || !strings.Contains(warns[0], "character device left out") {
		t.Errorf("skipped %d, warnings %q", st.Skipped, warns)
	}
	if _, err := os.Lstat(filepath.Join(root, "dom0-home/u/null")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("device created: %v", err)
	}
	for _, p := range []string{"dom0-home", "dom0-home/u", "dom0-home/u/s", "dom0-home/u/sub", "dom0-home/u/sub/f"} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		s := fi.Sys().(*syscall.Stat_t)
		if s.Uid != 65534 || s.Gid != 65534 {
			t.Errorf("%s owned by %d:%d", p, s.Uid, s.Gid)
		}
		if p == "dom0-home/u/s" && fi.Mode().Perm() != 0o755 || fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("%s mode %v", p, fi.Mode())
		}
	}
}

// A home whose last chunk is missing is refused, and the sink reports it.
func TestHomeTreeTruncated(t *testing.T) {
	home := filepath.Join(t.TempDir(), "user")
	makeHome(t, home)
	work := t.TempDir()
	out := filepath.Join(work, "backup")
	writeTestBackup(t, out, []Qube{{Name: "dom0", Files: []File{{Name: "dom0-home/user", Tree: home}}}},
		Options{ChunkSize: 4096})
	// Cut the archive after the second home chunk.
	b, _ := os.ReadFile(out)
	var cut int
	n := 0
	tr := &tarReader{r: bytes.NewReader(b)}
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no third chunk: %v", err)
		}
		if strings.HasPrefix(h.Name, "dom0-home/") {
			n++
			if n == 3 {
				cut = int(tr.Offset) - block
				break
			}
		}
		tr.skip()
	}
	os.WriteFile(out, b[:cut], 0o600)
	dst := t.TempDir()
	open, _ := treeSink(t, dst, "dom0-home/user")
	err := extractTestBackup(t, out, open)
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzExtractTree: any inner tar either extracts below the root or is
// refused; nothing appears beside the root, and nothing panics.
func FuzzExtractTree(f *testing.F) {
	f.Add(hostileTreeSeed(&tar.Header{Name: "dom0-home/u/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "dom0-home/u/a", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644}))
	f.Add(hostileTreeSeed(&tar.Header{Name: "dom0-home/u/l", Typeflag: tar.TypeSymlink, Linkname: "..", Mode: 0o777},
		&tar.Header{Name: "dom0-home/u/l/x", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644}))
	f.Add(hostileTreeSeed(&tar.Header{Name: "dom0-home/u/a", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644},
		&tar.Header{Name: "dom0-home/u/h", Typeflag: tar.TypeLink, Linkname: "dom0-home/u/a"}))
	base := f.TempDir()
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		// One directory per input under one TempDir: t.TempDir per input
		// stalls the coverage-guided fuzzer.
		n++
		parent := filepath.Join(base, strconv.Itoa(n))
		root := filepath.Join(parent, "root")
		os.MkdirAll(root, 0o700)
		defer os.RemoveAll(parent)
		ExtractTree(context.Background(), bytes.NewReader(data), root, TreeOptions{Prefix: "dom0-home/u", UID: -1, GID: -1, MaxBytes: 1 << 20})
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Fatalf("entries beside the root: %v", ents)
		}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type()&fs.ModeDevice != 0 {
				t.Fatalf("device node %s", p)
			}
			if err == nil && d.Type().IsRegular() {
				if fi, _ := d.Info(); fi != nil && fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
					t.Fatalf("setuid file %s", p)
				}
			}
			return nil
		})
	})
}

func hostileTreeSeed(hdrs ...*tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		tw.WriteHeader(h)
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return b.Bytes()
}
