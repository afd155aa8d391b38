package backup

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// The readers of untrusted bytes never panic and never accept what they
// cannot vouch for. Seeds run with go test; go test -fuzz explores.

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte("version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=20230405T123455-1234\n"))
	f.Add([]byte("version=3\nencrypted=True\ncompressed=False\ncrypto-algorithm=aes-256-cbc\nhmac-algorithm=SHA512\n"))
	f.Add([]byte("version=4\n=\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data, "")
		if err == nil && (h.Version < 3 || h.Version > 4 || (h.Version == 4 && h.BackupID == "")) {
			t.Fatalf("accepted %+v", h)
		}
	})
}

func FuzzScryptContainer(f *testing.F) {
	k, _ := NewKey([]byte("p"), testParams)
	var b bytes.Buffer
	k.Seal(&b, []byte("hello"))
	f.Add(b.Bytes())
	f.Add([]byte("scrypt\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// 1 MiB KDF ceiling: fuzzed parameters must not take the machine.
		if pt, err := Open([]byte("p"), append([]byte(nil), data...), 1<<20); err == nil && !bytes.Equal(data, b.Bytes()) && len(pt) >= 0 {
			// A different container that authenticates would be a forgery.
			if !bytes.HasPrefix(data, []byte("scrypt")) {
				t.Fatal("non-scrypt data accepted")
			}
		}
	})
}

func FuzzOuterTar(f *testing.F) {
	var b bytes.Buffer
	appendMember(&b, "backup-header", [][]byte{[]byte("version=4\n")})
	writeHeader(&b, tarHeader{Name: "vm1/x.000.enc", Size: 3, Typeflag: '0', PAX: [][2]string{{"path", "vm1/long.000.enc"}}})
	writePadded(&b, []byte("abc"))
	writeEnd(&b, int64(b.Len()), true)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := &tarReader{r: bytes.NewReader(data)}
		for i := 0; i < 100; i++ {
			h, err := tr.Next()
			if err != nil {
				return
			}
			if h.Size < 0 {
				t.Fatalf("negative size %d", h.Size)
			}
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return
			}
		}
	})
}

func FuzzOpenArchive(f *testing.F) {
	f.Add([]byte{})
	var b bytes.Buffer
	if err := Write(context.Background(), &b, []byte("<qubes/>"), []Qube{{Name: "q", Files: []File{{Name: "vm1/firewall.xml", Data: []byte("<x/>")}}}},
		Options{Passphrase: "p", Params: testParams, Compressed: true, BackupID: "1-1"}); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := OpenArchive(context.Background(), bytes.NewReader(data), ReadOptions{Passphrase: "p", MaxKDFMemory: 1 << 20})
		if err == nil {
			_ = a.Extract(context.Background(), func(string) bool { return true }, func(string, int64) (io.WriteCloser, error) {
				return nopWriteCloser{io.Discard}, nil
			})
		}
	})
}
