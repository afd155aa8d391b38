package commands

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/backup"
	"github.com/qvm-dev/qvm/core"
)

// backup-size in the qubes.xml copy is at least what the archive holds
// for the qube (incompressible data, many chunks): a restore from a qube
// refuses more than that.
func TestBackupSizeCoversTransfer(t *testing.T) {
	root, src := newBackupTestState(t)
	mustQvm(t, "create", "-C", "StandaloneVM", "-l", "red", "sa")
	mustQvm(t, "volume", "resize", "-f", "sa:root", "4MiB")
	mustQvm(t, "volume", "resize", "-f", "sa:private", "4MiB")
	data := make([]byte, 3<<20)
	rand.Read(data)
	os.WriteFile(filepath.Join(src, "appvms/sa/private.img"), data, 0o600)
	os.WriteFile(filepath.Join(src, "appvms/sa/firewall.xml"), []byte("<firewall/>"), 0o644)
	pw := filepath.Join(root, "pw")
	os.WriteFile(pw, []byte("size\n"), 0o600)
	out := filepath.Join(root, "b")
	mustQvm(t, "backup", "-y", "-q", "-p", pw, "--scrypt-params", "10:8:1", "--chunk-size", "64K", out, "sa")
	var sent int64
	for _, m := range readOuter(t, out) {
		if strings.HasPrefix(m.name, "vm") {
			sent += 512 + int64(len(m.data)+511)/512*512
		}
	}
	f, _ := os.Open(out)
	defer f.Close()
	a, err := backup.OpenArchive(context.Background(), f, backup.ReadOptions{Passphrase: "size"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := core.Parse(a.QubesXML, "copy", src, core.Host{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := app.Domain("sa")
	v, _ := d.Feature("backup-size")
	n, _ := strconv.ParseInt(v, 10, 64)
	if n < sent || n > sent+sent/10+1<<20 {
		t.Errorf("backup-size %d for %d bytes sent", n, sent)
	}
	if p, _ := d.Feature("backup-path"); !strings.HasPrefix(p, "vm") || !strings.HasSuffix(p, "/") {
		t.Errorf("backup-path %q", p)
	}
	if c, _ := d.Feature("backup-content"); c != "1" {
		t.Errorf("backup-content %q", c)
	}
	if c, ok := app.Dom0().Feature("backup-content"); !ok || c != "" {
		t.Errorf("dom0 backup-content %q %v (want present and empty)", c, ok)
	}
}
