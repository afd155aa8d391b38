package backup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// OpenArchive derives the header's and qubes.xml's keys side by side,
// and still reports the header first and refuses a damaged qubes.xml.
func TestOpenArchiveKeysTogether(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "backup")
	writeTestBackup(t, archive, nil, Options{Compressed: true, Params: Params{LogN: 14, R: 8, P: 1}})
	orig, _ := os.ReadFile(archive)
	kdfPeak.Store(0)
	a, err := OpenArchive(context.Background(), bytes.NewReader(orig), ReadOptions{Passphrase: "pass word"})
	if err != nil {
		t.Fatal(err)
	}
	if string(a.QubesXML) != "<qubes/>\n" {
		t.Errorf("qubes.xml = %q", a.QubesXML)
	}
	if p := kdfPeak.Load(); p != 2 {
		t.Errorf("%d derivations at once in OpenArchive, want 2", p)
	}
	f, _ := os.Open(archive)
	defer f.Close()
	var xmlOff, xmlSize int64
	tr := &tarReader{r: f}
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "qubes.xml.000.enc" {
			xmlOff, xmlSize = tr.Offset, h.Size
			break
		}
	}
	hdrText := bytes.Index(orig, []byte("backup-id="))
	for _, tc := range []struct {
		name, pass, want string
		edit             func([]byte) []byte
	}{
		{"wrong passphrase", "wrong", "Corrupted backup header", nil},
		{"header changed, qubes.xml cut", "pass word", "Corrupted backup header", func(b []byte) []byte {
			b[hdrText+12] ^= 1
			return b[:xmlOff+100]
		}},
		{"qubes.xml cut", "pass word", "archive is truncated: qubes.xml.000.enc is missing", func(b []byte) []byte { return b[:xmlOff+100] }},
		{"qubes.xml byte flipped", "pass word", "failed to decrypt qubes.xml.000.enc", func(b []byte) []byte {
			b[xmlOff+xmlSize-40] ^= 1
			return b
		}},
	} {
		b := append([]byte(nil), orig...)
		if tc.edit != nil {
			b = tc.edit(b)
		}
		_, err := OpenArchive(context.Background(), bytes.NewReader(b), ReadOptions{Passphrase: tc.pass})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}
