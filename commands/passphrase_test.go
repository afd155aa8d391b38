package commands

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPassphraseSources(t *testing.T) {
	env := newEnv(IO{In: strings.NewReader("other passphrase  \nsecond line\n")}, time.Now)
	if p, err := readPassphrase(env, passphraseSource{file: "-"}); err != nil || p != "other passphrase" {
		t.Fatalf("stdin: %q %v", p, err)
	}
	f := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(f, []byte("from file\n"), 0o600)
	if p, err := readPassphrase(env, passphraseSource{file: f}); err != nil || p != "from file" {
		t.Fatalf("file: %q %v", p, err)
	}
	os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := readPassphrase(env, passphraseSource{file: f}); err == nil || !strings.Contains(err.Error(), "empty passphrase") {
		t.Fatalf("empty: %v", err)
	}
	if _, err := readPassphrase(env, passphraseSource{file: "/nonexistent/pw"}); err == nil || !strings.Contains(err.Error(), "passphrase file") {
		t.Fatalf("missing file: %v", err)
	}
}

// Without a terminal and without --passphrase-file it fails at once
// instead of waiting for input that never comes (CI, cron).
func TestPassphraseNoTTY(t *testing.T) {
	env := newEnv(IO{In: strings.NewReader("")}, time.Now)
	_, err := readPassphrase(env, passphraseSource{prompt: "p: "})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--passphrase-file") {
		t.Fatalf("%v", err)
	}
}
