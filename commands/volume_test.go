package commands

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestParseSize pins the stock parse_size: powers of 1000 for K/M/G(B),
// of 1024 for Ki/Mi/Gi(B), case and spaces ignored, anything else refused
// with the upper-cased input.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"512": 512, "10GiB": 10 << 30, "10gib": 10 << 30, " 1 Gi ": 1 << 30, "3MiB": 3 << 20, "2Ki": 2048,
		"1K": 1000, "1KB": 1000, "2M": 2e6, "2mb": 2e6, "5G": 5e9, "5GB": 5e9, "0": 0,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"1Gx": "Invalid size: 1GX.", "": "Invalid size: .", "-1": "Invalid size: -1.", "1.5G": "Invalid size: 1.5G.",
		"GiB": "Invalid size: GIB.", "99999999999999999999": "Invalid size: 99999999999999999999.",
		"9999999999GiB": "Invalid size: 9999999999GIB.", "1TiB": "Invalid size: 1TIB.",
	} {
		if _, err := parseSize(in); err == nil || err.Error() != msg {
			t.Errorf("parseSize(%q): %v, want %q", in, err, msg)
		}
	}
}

// TestVolumeImportProgress: on a terminal the import shows a progress bar
// on stderr; in a pipe it stays quiet.
func TestVolumeImportProgress(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("QVM_STATE_DIR", dir+"/state")
	t.Setenv("QVM_CONFIG", dir+"/none.yaml")
	t.Setenv("QVM_RUN_DIR", dir+"/run")
	run := func(errTTY bool, args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := MainContext(context.Background(), append([]string{"qvm"}, args...),
			IO{In: strings.NewReader(""), Out: &out, Err: &errb, ErrIsTTY: errTTY}, time.Now)
		return errb.String(), code
	}
	for _, a := range [][]string{{"init", "--reflink", "no"}, {"create", "--standalone", "-l", "red", "sa"}} {
		if e, code := run(false, a...); code != 0 {
			t.Fatalf("%v: %d %s", a, code, e)
		}
	}
	data := dir + "/data.img"
	if err := os.WriteFile(data, bytes.Repeat([]byte("x"), 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	e, code := run(true, "volume", "import", "sa:private", data)
	if code != 0 || !strings.Contains(e, "Importing sa:private") || !strings.Contains(e, "100%") {
		t.Errorf("tty import: code %d, stderr %q", code, e)
	}
	e, code = run(false, "volume", "import", "sa:private", data)
	if code != 0 || e != "" {
		t.Errorf("pipe import: code %d, stderr %q", code, e)
	}
}
