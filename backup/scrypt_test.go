package backup

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testParams keep the KDF cheap in tests.
var testParams = Params{LogN: 10, R: 8, P: 1}

func TestScryptKnownAnswer(t *testing.T) {
	// spec backup.md §5: passphrase backup-header!qubes, salt 00..1f, logN 10.
	want, _ := hex.DecodeString(strings.Join(strings.Fields(`
736372797074000a0000000800000001000102030405060708090a0b0c0d0e0f
101112131415161718191a1b1c1d1e1fda46ceb5d5738b6fc865e137d56ab589
0bcfe16989ed77e8e9bccf825cd5edc152bc210bc06f5facb3d41af10e68f113
9c6e88c673216e57a83b67a253cc29e97dff4a377a68362fa6ca95bab9e2c529
18193350d31d99cd9585`), ""))
	k := &Key{Params: testParams}
	for i := range k.Salt {
		k.Salt[i] = byte(i)
	}
	if err := k.derive([]byte("backup-header!qubes"), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := k.Seal(&buf, []byte("version=4\n")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("container differs:\n got %x\nwant %x", buf.Bytes(), want)
	}
	pt, err := Open([]byte("backup-header!qubes"), buf.Bytes(), 1<<30)
	if err != nil || string(pt) != "version=4\n" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
}

func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (deps/backup.deb)", n)
		}
	}
}

func TestScryptCLIInterop(t *testing.T) {
	needTool(t, "scrypt")
	dir := t.TempDir()
	pass := "20230405T123455-1234!vm12/private.img.003!sécret"
	for _, size := range []int{0, 1, 4095, 300000} {
		plain := bytes.Repeat([]byte("qubes!"), size/6+1)[:size]
		// Go -> scrypt dec
		k, err := NewKey([]byte(pass), testParams)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := k.Seal(&buf, append([]byte(nil), plain...)); err != nil {
			t.Fatal(err)
		}
		if int64(buf.Len()) != SealedSize(int64(size)) {
			t.Fatalf("size %d: sealed %d", size, buf.Len())
		}
		enc := filepath.Join(dir, "go.enc")
		os.WriteFile(enc, buf.Bytes(), 0o600)
		cmd := exec.Command("scrypt", "dec", "-P", enc)
		cmd.Stdin = strings.NewReader(pass + "\n")
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, plain) {
			t.Fatalf("size %d: scrypt dec: %v (got %d bytes)", size, err, len(out))
		}
		// scrypt enc -> Go
		in := filepath.Join(dir, "plain")
		os.WriteFile(in, plain, 0o600)
		cli := filepath.Join(dir, "cli.enc")
		cmd = exec.Command("scrypt", "enc", "--logN", "10", "-r", "8", "-p", "1", "-P", in, cli)
		cmd.Stdin = strings.NewReader(pass + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scrypt enc: %v %s", err, out)
		}
		data, _ := os.ReadFile(cli)
		got, err := Open([]byte(pass), data, 1<<30)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("size %d: Open of scrypt enc output: %v", size, err)
		}
	}
}

func TestScryptRefuses(t *testing.T) {
	k, _ := NewKey([]byte("a!b!pw"), testParams)
	var buf bytes.Buffer
	k.Seal(&buf, []byte("some data here"))
	good := buf.Bytes()
	if _, err := Open([]byte("a!b!other"), append([]byte(nil), good...), 1<<30); err != ErrBadPassword {
		t.Errorf("wrong passphrase: %v", err)
	}
	for i := 0; i < len(good); i++ {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x40
		if _, err := Open([]byte("a!b!pw"), bad, 1<<30); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
	if _, err := Open([]byte("a!b!pw"), good[:len(good)-1], 1<<30); err == nil {
		t.Error("truncated container accepted")
	}
	huge := append([]byte(nil), good...)
	huge[7] = 40 // logN 40: 128 TiB of KDF memory
	if _, err := Open([]byte("a!b!pw"), huge, 1<<30); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("huge logN with old checksum: %v", err)
	}
	if _, err := ParseParams("17:8"); err == nil {
		t.Error("ParseParams accepted two fields")
	}
	if p, err := ParseParams("17:8:1"); err != nil || p != (Params{17, 8, 1}) {
		t.Errorf("ParseParams = %v %v", p, err)
	}
	if _, err := ParseParams("0:8:1"); err == nil {
		t.Error("logN 0 accepted")
	}
}
