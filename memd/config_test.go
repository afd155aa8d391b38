package memd

import (
	"path/filepath"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"200M": 200000000, "350M": 350000000, "200MiB": 209715200, "350Mi": 367001600,
		"2k": 2000, "16 MiB": 16777216, "1234": 1234, " 5G ": 5000000000, "3gib": 3 << 30, "7KB": 7000,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "1.5G", "abc", "12T", "5 5M"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if _, err := ParseSize("x"); err == nil || err.Error() != "Invalid size: x." {
		t.Errorf("error text %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	shipped := "[global]\nvm-min-mem = 200M\ndom0-mem-boost = 350M\ncache-margin-factor = 1.3\nlog-level = 30\n"
	c, err := ParseConfig([]byte(shipped), "qmemman.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.Params != (Params{MinPrefMem: 200000000, Dom0MemBoost: 350000000, CacheFactor: 1.3}) || c.LogLevel != 30 {
		t.Errorf("shipped file: %+v", c)
	}
	c, err = ParseConfig([]byte("# no global\n[other]\nvm-min-mem = 1\n"), "x")
	if err != nil || c.Params != DefaultParams() {
		t.Errorf("no [global]: %+v %v", c, err)
	}
	c, err = ParseConfig([]byte("[global]\nVM-Min-Mem: 300MiB\n; comment\nlog-level=10\n"), "x")
	if err != nil || c.Params.MinPrefMem != 300<<20 || c.Params.Dom0MemBoost != DefaultDom0MemBoost || c.SlogLevel().String() != "DEBUG" {
		t.Errorf("partial: %+v %v", c, err)
	}
	for _, bad := range []string{"[global]\nvm-min-mem = lots\n", "[global]\ncache-margin-factor = x\n", "[global]\nlog-level = high\n", "vm-min-mem = 1\n", "[global\n"} {
		if _, err := ParseConfig([]byte(bad), "x"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	c, err = LoadConfig(filepath.Join(t.TempDir(), "missing.conf"))
	if err != nil || c.Params != DefaultParams() {
		t.Errorf("missing file: %+v %v", c, err)
	}
}

// The file `make install` puts in /etc/qubes is the reference's shipped one.
func TestShippedConfig(t *testing.T) {
	c, err := LoadConfig("dist/qmemman.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.Params != (Params{MinPrefMem: 200000000, Dom0MemBoost: 350000000, CacheFactor: 1.3}) || c.LogLevel != 30 {
		t.Errorf("shipped config: %+v", c)
	}
}
