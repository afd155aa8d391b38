package backup

import "testing"

func TestHeaderVectors(t *testing.T) {
	// spec backup.md §3 (TB vectors)
	h := &Header{Version: 4, Encrypted: true, Compressed: false, CompressionFilter: "gzip", CryptoAlgorithm: "aes-256-cbc", HMACAlgorithm: "scrypt", BackupID: "backup-id"}
	want := "version=4\nencrypted=True\ncompressed=False\ncompression-filter=gzip\ncrypto-algorithm=aes-256-cbc\nhmac-algorithm=scrypt\nbackup-id=backup-id\n"
	if got := string(h.Marshal()); got != want {
		t.Fatalf("Marshal:\n%s", got)
	}
	typical := "version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\nhmac-algorithm=scrypt\nbackup-id=20230405T123455-1234\n"
	p, err := ParseHeader([]byte(typical), "")
	if err != nil || p.BackupID != "20230405T123455-1234" || !p.Compressed || p.CompressionFilter != "gzip" {
		t.Fatalf("ParseHeader = %+v, %v", p, err)
	}
	// the client's own order (hmac-algorithm second) is fine
	if _, err := ParseHeader([]byte("version=4\nhmac-algorithm=scrypt\nencrypted=True\ncompressed=False\nbackup-id=x\n"), ""); err != nil {
		t.Errorf("reordered header: %v", err)
	}
	for in, msg := range map[string]string{
		typical + "version=4\n":        "Duplicated header line: version",
		typical + "a=b=c\n":            "Invalid backup header",
		typical + "bad key=1\n":        "Invalid backup header (key)",
		typical + "future-key=1\n":     "Unknown backup header key: future-key",
		"version=4\nencrypted=Tr.ue\n": "Invalid backup header (value)",
		"version=5\n":                  "Invalid value for header: version",
		"version=4\nencrypted=True\n":  "Backup header lack 'compressed' info",
		"version=4\nencrypted=True\ncompressed=True\nhmac-algorithm=scrypt\nbackup-id=x\n":                           "Backup header lack 'compression_filter' info",
		"version=4\nencrypted=True\ncompressed=True\ncompression-filter=rot13\nhmac-algorithm=scrypt\nbackup-id=x\n": "Unusual compression filter 'rot13' found. Use --compression-filter=rot13 to use it anyway.",
		"version=4\nencrypted=True\ncompressed=False\nhmac-algorithm=scrypt\nbackup-id=-x\n":                         "Invalid value for header: backup-id",
		"version=4\nencrypted=True\ncompressed=False\nhmac-algorithm=scrypt\n":                                       "Backup header lack 'backup_id' info",
		"version=2\nencrypted=True\ncompressed=False\nhmac-algorithm=SHA1\ncrypto-algorithm=aes-256-cbc\n":           "Backup format version 2 not supported",
		"version=4\xff\n": "Non-ASCII characters in backup header",
	} {
		if _, err := ParseHeader([]byte(in), ""); err == nil || err.Error() != msg {
			t.Errorf("%q: got %v, want %q", in, err, msg)
		}
	}
	// -Z forces the filter and skips the header's value
	p, err = ParseHeader([]byte("version=4\nencrypted=True\ncompressed=True\ncompression-filter=rot13\nhmac-algorithm=scrypt\nbackup-id=x\n"), "cat")
	if err != nil || p.CompressionFilter != "cat" {
		t.Errorf("forced filter: %+v %v", p, err)
	}
}
