package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
)

// newBackupTestState makes a fresh state (file pool) in root/src and points
// the in-process qvm at it; restores go to other dirs under root.
func newBackupTestState(t *testing.T) (root, src string) {
	t.Helper()
	root = t.TempDir()
	src = filepath.Join(root, "src")
	t.Setenv("QVM_CONFIG", filepath.Join(root, "none.yaml"))
	t.Setenv("QVM_RUN_DIR", filepath.Join(root, "run"))
	t.Setenv("QVM_STATE_DIR", src)
	mustQvm(t, "init", "--reflink", "no")
	return root, src
}

// Backup then restore into a fresh state gives the same volume bytes and
// the same qubes.xml data (properties, features, tags, device
// assignments, firewall), for every compression and with many chunks.
func TestBackupRestoreRoundTrip(t *testing.T) {
	root, src := newBackupTestState(t)
	mustQvm(t, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	mustQvm(t, "create", "-l", "green", "-t", "tpl", "--prop", "vcpus=3", "--prop", "memory=700", "--prop", "provides_network=True", "net")
	mustQvm(t, "create", "-l", "blue", "-t", "tpl", "--prop", "netvm=net", "--prop", "kernelopts=quiet", "work")
	mustQvm(t, "tags", "work", "add", "project-x")
	mustQvm(t, "features", "work", "gui", "1")
	mustQvm(t, "service", "work", "cups", "on")
	st := &store.Store{Dir: src, Host: hostInfo()}
	if err := st.Update(context.Background(), func(app *core.App) error {
		d, _ := app.Domain("work")
		d.Devices = append(d.Devices, &core.DeviceClass{Class: "pci", Devices: []*core.DeviceAssignment{
			{Backend: "dom0", Port: "00_1f.2", Mode: "required", Identity: "*", Options: []core.Opt{{Key: "no-strict-reset", Value: "True"}}}}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "appvms/work/firewall.xml"), []byte("<firewall version=\"2\"><rules/></firewall>\n"), 0o644)
	// Small nominal sizes keep the test quick (a restore's import reads
	// the whole logical size, holes included).
	for _, v := range []string{"tpl:root", "tpl:private", "net:private", "work:private"} {
		mustQvm(t, "volume", "resize", "-f", v, "8MiB")
	}
	// Real volume data: random runs with holes in between.
	for _, p := range []string{"appvms/work/private.img", "appvms/net/private.img", "vm-templates/tpl/root.img"} {
		f, err := os.OpenFile(filepath.Join(src, p), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < 6<<20; off += 2 << 20 {
			b := make([]byte, 300<<10)
			rand.Read(b)
			f.WriteAt(b, off+4096)
		}
		f.Close()
	}
	pw := filepath.Join(root, "pw")
	os.WriteFile(pw, []byte("round trip\n"), 0o600)
	sum := func(p string) string {
		data, err := os.ReadFile(p)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%x", sha256.Sum256(data))
	}
	for _, tc := range []struct {
		name string
		args []string
		tool string
	}{
		{"gzip", nil, ""},
		{"bzip2", []string{"-Z", "bzip2"}, "bzip2"},
		{"xz", []string{"-Z", "xz"}, "xz"},
		{"none", []string{"--no-compress"}, ""},
		{"gzip-multichunk", []string{"--chunk-size", "64K"}, ""},
		{"none-multichunk", []string{"--no-compress", "--chunk-size", "128K"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tool != "" {
				if _, err := exec.LookPath(tc.tool); err != nil {
					t.Skipf("%s missing (deps/backup.deb)", tc.tool)
				}
			}
			t.Setenv("QVM_STATE_DIR", src)
			out := filepath.Join(t.TempDir(), "b")
			mustQvm(t, append(append([]string{"backup", "-y", "-q", "-p", pw, "--scrypt-params", "10:8:1"}, tc.args...), out, "tpl", "net", "work")...)
			dst := filepath.Join(t.TempDir(), "dst")
			t.Setenv("QVM_STATE_DIR", dst)
			mustQvm(t, "init", "--reflink", "no")
			mustQvm(t, "restore", "-q", "-p", pw, out)
			want, got := describeState(t, src), describeState(t, dst)
			for _, must := range []string{"net prefs vcpus", "work prefs netvm                 -  net", "work prefs kernelopts", "device pci {Backend:dom0 Port:00_1f.2", "work tags\n", "project-x", "service.cups"} {
				if !strings.Contains(got, must) {
					t.Errorf("restored state lacks %q:\n%s", must, got)
				}
			}
			if want != got {
				t.Errorf("qubes.xml data differs:\n--- source\n%s\n--- restored\n%s", want, got)
			}
			for _, p := range []string{"appvms/work/private.img", "appvms/net/private.img", "vm-templates/tpl/root.img", "vm-templates/tpl/private.img", "appvms/work/firewall.xml"} {
				if a, b := sum(filepath.Join(src, p)), sum(filepath.Join(dst, p)); a != b {
					t.Errorf("%s: sha256 %s, restored %s", p, a, b)
				}
			}
		})
	}
}

// describeState is every qube's data as the commands show it, minus what a
// restore renews (qid, uuid, derived addresses, backup time).
func describeState(t *testing.T, state string) string {
	t.Helper()
	t.Setenv("QVM_STATE_DIR", state)
	var b strings.Builder
	for _, q := range []string{"tpl", "net", "work"} {
		for _, l := range strings.Split(strings.TrimSpace(mustQvm(t, "prefs", q)), "\n") {
			switch strings.Fields(l)[0] {
			case "qid", "uuid", "backup_timestamp", "ip", "visible_ip", "ip6", "visible_ip6", "mac", "visible_gateway", "visible_netmask", "gateway", "xid", "start_time", "stubdom_xid":
				continue
			}
			b.WriteString(q + " prefs " + l + "\n")
		}
		b.WriteString(q + " features\n" + mustQvm(t, "features", q))
		b.WriteString(q + " tags\n" + mustQvm(t, "tags", q))
	}
	st := &store.Store{Dir: state, Host: hostInfo()}
	_ = st.View(context.Background(), func(app *core.App) error {
		d, err := app.Domain("work")
		if err != nil {
			return err
		}
		for _, c := range d.Devices {
			for _, da := range c.Devices {
				fmt.Fprintf(&b, "device %s %+v\n", c.Class, *da)
			}
		}
		for _, v := range d.Volumes {
			fmt.Fprintf(&b, "volume %s size %d\n", v.Name, v.Size)
		}
		return nil
	})
	return b.String()
}
