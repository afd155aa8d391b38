package backup

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Header is the backup-header file.
type Header struct {
	Version           int
	Encrypted         bool
	Compressed        bool
	CompressionFilter string // "" when absent
	CryptoAlgorithm   string // v3 only
	HMACAlgorithm     string
	BackupID          string
}

// Marshal writes the header in the reference's key order.
func (h *Header) Marshal() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "version=%d\n", h.Version)
	fmt.Fprintf(&b, "encrypted=%s\n", pyBool(h.Encrypted))
	fmt.Fprintf(&b, "compressed=%s\n", pyBool(h.Compressed))
	if h.CompressionFilter != "" {
		fmt.Fprintf(&b, "compression-filter=%s\n", h.CompressionFilter)
	}
	if h.CryptoAlgorithm != "" {
		fmt.Fprintf(&b, "crypto-algorithm=%s\n", h.CryptoAlgorithm)
	}
	if h.HMACAlgorithm != "" {
		fmt.Fprintf(&b, "hmac-algorithm=%s\n", h.HMACAlgorithm)
	}
	if h.BackupID != "" {
		fmt.Fprintf(&b, "backup-id=%s\n", h.BackupID)
	}
	return []byte(b.String())
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

var headerToken = regexp.MustCompile(`^[A-Za-z0-9-]*$`)

// headerKeys are the keys Qubes releases write (spec backup.md §3).
var headerKeys = map[string]bool{"version": true, "encrypted": true, "compressed": true,
	"compression-filter": true, "crypto-algorithm": true, "hmac-algorithm": true, "backup-id": true}

// Stock filters: always allowed, and optional ones allowed when installed.
var (
	stockFilters    = []string{"gzip", "bzip2", "xz"}
	optionalFilters = []string{"lzma", "pbzip2", "pigz", "zstd", "zstdmt"}
)

// HeaderError is a refused backup header.
type HeaderError struct{ Msg string }

func (e *HeaderError) Error() string { return e.Msg }

func headerErr(format string, args ...any) error {
	return &HeaderError{Msg: fmt.Sprintf(format, args...)}
}

// ParseHeader applies the reference reader's rules to an authenticated
// header. forcedFilter (-Z) replaces the header's filter unchecked.
func ParseHeader(data []byte, forcedFilter string) (*Header, error) {
	for _, c := range data {
		if c >= 0x80 {
			return nil, headerErr("Non-ASCII characters in backup header")
		}
	}
	h := &Header{}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		if strings.Count(line, "=") != 1 {
			return nil, headerErr("Invalid backup header")
		}
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		if !headerToken.MatchString(k) {
			return nil, headerErr("Invalid backup header (key)")
		}
		if !headerKeys[k] {
			// The stock reader skips it; no Qubes release writes a key
			// outside this list, so here it marks a crafted or foreign
			// header and is refused.
			return nil, headerErr("Unknown backup header key: %s", k)
		}
		if seen[k] {
			return nil, headerErr("Duplicated header line: %s", k)
		}
		seen[k] = true
		if k == "compression-filter" && forcedFilter != "" {
			continue
		}
		if !headerToken.MatchString(v) {
			return nil, headerErr("Invalid backup header (value)")
		}
		truthy := func(s string) bool {
			switch strings.ToLower(s) {
			case "1", "true", "yes":
				return true
			}
			return false
		}
		switch k {
		case "version":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 4 {
				return nil, headerErr("Invalid value for header: %s", k)
			}
			h.Version = n
		case "encrypted":
			h.Encrypted = truthy(v)
		case "compressed":
			h.Compressed = truthy(v)
		case "compression-filter":
			if err := checkFilter(v); err != nil {
				return nil, err
			}
			h.CompressionFilter = v
		case "crypto-algorithm":
			if !knownCipher(v) {
				return nil, headerErr("Invalid value for header: %s", k)
			}
			h.CryptoAlgorithm = v
		case "hmac-algorithm":
			if !strings.EqualFold(v, "scrypt") && hmacHash(v) == nil {
				return nil, headerErr("Invalid value for header: %s", k)
			}
			h.HMACAlgorithm = v
		case "backup-id":
			if v == "" || strings.HasPrefix(v, "-") {
				return nil, headerErr("Invalid value for header: %s", k)
			}
			h.BackupID = v
		}
	}
	if forcedFilter != "" {
		h.CompressionFilter = forcedFilter
	}
	if h.Version < 2 || h.Version > 4 {
		if h.Version == 0 {
			return nil, headerErr("Backup header lack 'version' info")
		}
		return nil, headerErr("Unsupported backup version %d", h.Version)
	}
	need := []struct {
		ok   bool
		name string
	}{
		{seen["encrypted"], "encrypted"},
		{seen["compressed"], "compressed"},
		{h.HMACAlgorithm != "", "hmac_algorithm"},
		{!h.Encrypted || h.Version >= 4 || h.CryptoAlgorithm != "", "crypto_algorithm"},
		{h.Version < 3 || !h.Compressed || h.CompressionFilter != "", "compression_filter"},
		{h.Version < 4 || h.BackupID != "", "backup_id"},
	}
	for _, n := range need {
		if !n.ok {
			return nil, headerErr("Backup header lack '%s' info", n.name)
		}
	}
	if h.Version == 2 {
		return nil, headerErr("Backup format version 2 not supported")
	}
	if h.Version == 4 && !h.Encrypted {
		return nil, headerErr("Unencrypted format 4 backups are not supported: every chunk must be scrypt-encrypted")
	}
	return h, nil
}

func checkFilter(f string) error {
	for _, s := range stockFilters {
		if f == s {
			return nil
		}
	}
	for _, s := range optionalFilters {
		if f == s {
			if _, err := exec.LookPath(f); err != nil {
				return headerErr("Optional '%s' compression filter is not installed. Install it and retry.", f)
			}
			return nil
		}
	}
	return headerErr("Unusual compression filter '%s' found. Use --compression-filter=%s to use it anyway.", f, f)
}

// CheckWriteFilter is the -Z rule of qvm backup: the stock and optional
// filters only, and the program must be installed unless it is built in.
func CheckWriteFilter(f string) error {
	if f == "gzip" {
		return nil
	}
	if err := checkFilter(f); err != nil {
		if he, ok := err.(*HeaderError); ok && strings.HasPrefix(he.Msg, "Unusual") {
			return fmt.Errorf("compression filter %q is not one the Qubes restore accepts (use one of %s)", f, strings.Join(append(stockFilters, optionalFilters...), ", "))
		}
		return err
	}
	if _, err := exec.LookPath(f); err != nil {
		return fmt.Errorf("compression filter %q is not installed", f)
	}
	return nil
}

// knownCipher: the openssl ciphers a v3 backup names (we decrypt the CBC
// AES ones; others are refused when used).
func knownCipher(v string) bool {
	switch strings.ToLower(v) {
	case "aes-256-cbc", "aes-192-cbc", "aes-128-cbc", "scrypt":
		return true
	}
	return false
}
