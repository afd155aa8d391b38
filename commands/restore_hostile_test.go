package commands

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/backup"
)

type outerMember struct {
	name string
	data []byte
}

func runQvmIn(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := MainContext(context.Background(), append([]string{"qvm"}, args...),
		IO{In: strings.NewReader(""), Out: &out, Err: &errb}, time.Now)
	return code, out.String(), errb.String()
}

func mustQvm(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := runQvmIn(t, args...)
	if code != 0 {
		t.Fatalf("qvm %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

func readOuter(t *testing.T, path string) []outerMember {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []outerMember
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		ms = append(ms, outerMember{h.Name, data})
	}
}

func writeOuter(t *testing.T, path string, ms []outerMember) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		tw.WriteHeader(&tar.Header{Name: m.name, Size: int64(len(m.data)), Mode: 0o600, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
		tw.Write(m.data)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func listTree(t *testing.T, root string) string {
	var names []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !strings.HasSuffix(p, ".lock") {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	return strings.Join(names, "\n")
}

func seal(t *testing.T, pass string, plain []byte) []byte {
	k, err := backup.NewKey([]byte(pass), backup.Params{LogN: 10, R: 8, P: 1})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	k.Seal(&b, append([]byte(nil), plain...))
	return b.Bytes()
}

// Crafted and damaged archives are refused with a reason; the host's
// qubes.xml stays as it was and nothing is written anywhere.
func TestRestoreRefusesHostileArchives(t *testing.T) {
	if _, err := exec.LookPath("truncate"); err != nil {
		t.Skip("truncate (coreutils) missing")
	}
	root := t.TempDir()
	src, dst := filepath.Join(root, "src"), filepath.Join(root, "dst")
	t.Setenv("QVM_CONFIG", filepath.Join(root, "none.yaml"))
	t.Setenv("QVM_STATE_DIR", src)
	mustQvm(t, "init", "--reflink", "no")
	mustQvm(t, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	mustQvm(t, "create", "-l", "green", "-t", "tpl", "work")
	for _, p := range []string{"appvms/work/private.img", "vm-templates/tpl/root.img", "vm-templates/tpl/private.img"} {
		full := filepath.Join(src, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		data := make([]byte, 200<<10) // random: several 64 KiB chunks
		rand.Read(data)
		os.WriteFile(full, data, 0o600)
	}
	// dom0's home too: a few chunks of it, restored into home2.
	home, home2 := filepath.Join(root, "home"), filepath.Join(root, "home2")
	os.MkdirAll(filepath.Join(home, "docs"), 0o755)
	os.MkdirAll(home2, 0o755)
	homeData := make([]byte, 150<<10)
	rand.Read(homeData)
	os.WriteFile(filepath.Join(home, "docs/random.bin"), homeData, 0o600)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("QVM_DOM0_USER", me.Username)
	t.Setenv("QVM_DOM0_HOME", home)
	pw := filepath.Join(root, "pw")
	os.WriteFile(pw, []byte("right\n"), 0o600)
	good := filepath.Join(root, "good")
	mustQvm(t, "backup", "-y", "-p", pw, "--scrypt-params", "10:8:1", "--chunk-size", "64K", good, "tpl", "work", "dom0")
	t.Setenv("QVM_DOM0_HOME", home2)
	ms := readOuter(t, good)
	hdr := string(ms[0].data)
	id := strings.TrimSpace(hdr[strings.Index(hdr, "backup-id=")+len("backup-id="):])

	t.Setenv("QVM_STATE_DIR", dst)
	mustQvm(t, "init", "--reflink", "no")
	xmlBefore, _ := os.ReadFile(filepath.Join(dst, "qubes.xml"))
	treeBefore := listTree(t, root)

	index := func(name string) int {
		for i, m := range ms {
			if m.name == name {
				return i
			}
		}
		t.Fatalf("no member %s in %v", name, ms)
		return -1
	}
	clone := func() []outerMember { return append([]outerMember(nil), ms...) }
	without := func(name string) []outerMember {
		c := clone()
		i := index(name)
		return append(c[:i], c[i+1:]...)
	}
	withHeader := func(h string) []outerMember {
		c := clone()
		c[0] = outerMember{"backup-header", []byte(h)}
		c[1] = outerMember{"backup-header.hmac", seal(t, "backup-header!right", []byte(h))}
		return c
	}
	var vm1Chunks []string
	for _, m := range ms {
		if strings.HasPrefix(m.name, "vm1/root.img.") {
			vm1Chunks = append(vm1Chunks, m.name)
		}
	}
	lastOf := func(prefix string) string {
		last := ""
		for _, m := range ms {
			if strings.HasPrefix(m.name, prefix) {
				last = m.name
			}
		}
		return last
	}
	if len(vm1Chunks) < 3 {
		t.Fatalf("want a multi-chunk volume, got %v", vm1Chunks)
	}
	cases := []struct {
		name    string
		archive func() []outerMember
		raw     func() []byte
		pass    string
		want    string
	}{
		{name: "wrong passphrase", archive: clone, pass: "wrong", want: "Corrupted backup header (hmac verification failed). Is the password correct?"},
		{name: "renamed to another qube", archive: func() []outerMember {
			c := clone()
			i := index("vm2/private.img.000.enc")
			c[i].name = "vm1/private.img.000.enc"
			c[index("vm1/private.img.000.enc")].name = "vm2/private.img.000.enc"
			return c
		}, want: "failed to decrypt vm"},
		{name: "missing middle chunk", archive: func() []outerMember { return without(vm1Chunks[1]) }, want: "Unexpected file in archive: " + vm1Chunks[2] + ", expected " + vm1Chunks[1]},
		{name: "missing last chunk of a middle file", archive: func() []outerMember { return without(vm1Chunks[len(vm1Chunks)-1]) }, want: "vm1/root.img: "},
		{name: "missing last chunk of the archive", archive: func() []outerMember { return without(lastOf("vm2/private.img.")) }, want: "vm2/private.img: "},
		{name: "injected plain member", archive: func() []outerMember {
			c := clone()
			return append(c[:4], append([]outerMember{{"vm1/evil.sh", []byte("#!/bin/sh\n")}}, c[4:]...)...)
		}, want: "Invalid file extension found in archive: vm1/evil.sh"},
		{name: "parent path", archive: func() []outerMember {
			c := clone()
			return append(c, outerMember{"../evil.img.000.enc", []byte("x")})
		}, want: "refused member \"../evil.img.000.enc\""},
		{name: "absolute path", archive: func() []outerMember {
			c := clone()
			return append(c, outerMember{"/tmp/evil.img.000.enc", []byte("x")})
		}, want: "refused member \"/tmp/evil.img.000.enc\""},
		{name: "header changed without the passphrase", archive: func() []outerMember {
			c := clone()
			c[0] = outerMember{"backup-header", []byte(strings.Replace(hdr, "compressed=True", "compressed=False", 1))}
			return c
		}, want: "Corrupted backup header"},
		{name: "bad header key", archive: func() []outerMember { return withHeader(hdr + "evil_key=1\n") }, want: "Invalid backup header (key)"},
		{name: "unknown header key", archive: func() []outerMember { return withHeader(hdr + "future-key=1\n") }, want: "Unknown backup header key: future-key"},
		{name: "bad header value", archive: func() []outerMember { return withHeader(strings.Replace(hdr, "backup-id="+id, "backup-id=../x", 1)) }, want: "Invalid backup header (value)"},
		{name: "duplicate header key", archive: func() []outerMember { return withHeader(hdr + "version=4\n") }, want: "Duplicated header line: version"},
		{name: "non-whitelisted filter", archive: func() []outerMember {
			return withHeader(strings.Replace(hdr, "compression-filter=gzip", "compression-filter=sh", 1))
		}, want: "Unusual compression filter 'sh' found. Use --compression-filter=sh to use it anyway."},
		{name: "huge header", archive: func() []outerMember {
			c := clone()
			c[0] = outerMember{"backup-header", bytes.Repeat([]byte("a=b\n"), 1<<18)}
			return c
		}, want: "backup-header is 1048576 bytes, more than the 4096 allowed"},
		{name: "chunk from another backup", archive: func() []outerMember {
			c := clone()
			i := index(vm1Chunks[1])
			c[i].data = seal(t, "20990101T000000-1!"+strings.TrimSuffix(vm1Chunks[1], ".enc")+"!right", []byte("spliced"))
			return c
		}, want: "failed to decrypt " + vm1Chunks[1]},
		{name: "right key, foreign content", archive: func() []outerMember {
			c := clone()
			i := index(vm1Chunks[1])
			c[i].data = seal(t, id+"!"+strings.TrimSuffix(vm1Chunks[1], ".enc")+"!right", []byte("garbage that is not gzip"))
			return c
		}, want: "vm1/root.img: "},
		{name: "a whole file missing", archive: func() []outerMember {
			c := clone()
			var out []outerMember
			for _, m := range c {
				if !strings.HasPrefix(m.name, "vm2/private.img.") {
					out = append(out, m)
				}
			}
			return out
		}, want: "vm2/private.img of work is missing from the archive"},
		{name: "dom0 home missing", archive: func() []outerMember {
			var out []outerMember
			for _, m := range clone() {
				if !strings.HasPrefix(m.name, "dom0-home/") {
					out = append(out, m)
				}
			}
			return out
		}, want: "dom0-home/" + me.Username + " (dom0's home) is missing from the archive"},
		{name: "dom0 home renamed to another user", archive: func() []outerMember {
			c := clone()
			for i := range c {
				c[i].name = strings.Replace(c[i].name, "dom0-home/"+me.Username+".", "dom0-home/other.", 1)
			}
			return c
		}, want: "failed to decrypt dom0-home/other.000.enc"},
		{name: "dom0 home last chunk missing", archive: func() []outerMember { return without(lastOf("dom0-home/" + me.Username + ".")) }, want: "dom0-home/" + me.Username + ": inner archive"},
		{name: "truncated archive", raw: func() []byte {
			b, _ := os.ReadFile(good)
			return b[:len(b)*2/3]
		}, want: "truncated"},
	}
	// A flipped byte in every member of the archive.
	for i, m := range ms {
		if i == 0 {
			continue // the plain header: covered by "header changed"
		}
		i, m := i, m
		cases = append(cases, struct {
			name    string
			archive func() []outerMember
			raw     func() []byte
			pass    string
			want    string
		}{name: "flipped byte in " + m.name, archive: func() []outerMember {
			c := clone()
			d := append([]byte(nil), m.data...)
			d[len(d)/2] ^= 1
			c[i].data = d
			return c
		}, want: map[bool]string{true: "Corrupted backup header", false: "failed to decrypt " + m.name}[i == 1]})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad")
			if tc.raw != nil {
				os.WriteFile(path, tc.raw(), 0o600)
			} else {
				writeOuter(t, path, tc.archive())
			}
			pass := pw
			if tc.pass != "" {
				pass = filepath.Join(t.TempDir(), "pw")
				os.WriteFile(pass, []byte(tc.pass+"\n"), 0o600)
			}
			code, _, errs := runQvmIn(t, "restore", "-p", pass, path)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant it to contain %q", code, errs, tc.want)
			}
			if xml, _ := os.ReadFile(filepath.Join(dst, "qubes.xml")); !bytes.Equal(xml, xmlBefore) {
				t.Error("qubes.xml changed")
			}
			if tree := listTree(t, root); tree != treeBefore {
				t.Errorf("files changed:\nbefore:\n%s\nafter:\n%s", treeBefore, tree)
			}
		})
	}
	// The intact archive restores (the cases above fail for their reason).
	code, out, errs := runQvmIn(t, "restore", "-p", pw, good)
	if code != 0 {
		t.Fatalf("good archive: exit %d\n%s%s", code, out, errs)
	}
	for _, p := range []string{"appvms/work/private.img", "vm-templates/tpl/root.img"} {
		a, _ := os.ReadFile(filepath.Join(src, p))
		b, _ := os.ReadFile(filepath.Join(dst, p))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs after restore", p)
		}
	}
	got, _ := filepath.Glob(filepath.Join(home2, "home-restore-*", "dom0-home", me.Username, "docs/random.bin"))
	if len(got) != 1 {
		t.Fatalf("restored home: %v", got)
	}
	if b, _ := os.ReadFile(got[0]); !bytes.Equal(b, homeData) {
		t.Error("dom0 home file differs after restore")
	}
}
