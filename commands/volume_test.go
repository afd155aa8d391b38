package commands

import "testing"

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
