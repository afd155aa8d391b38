package memd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// DefaultConfigPath is the reference's config file.
const DefaultConfigPath = "/etc/qubes/qmemman.conf"

// Config is qmemman.conf.
type Config struct {
	Params Params
	// LogLevel is the Python level number of log-level (10 debug, 20 info,
	// 30 warning, 40 error); 30 when unset.
	LogLevel int
}

// SlogLevel maps the Python level number onto slog.
func (c Config) SlogLevel() slog.Level {
	switch {
	case c.LogLevel <= 10:
		return slog.LevelDebug
	case c.LogLevel <= 20:
		return slog.LevelInfo
	case c.LogLevel <= 30:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// LoadConfig reads path like the reference: a missing file or one without
// a [global] section gives the built-in values; keys missing from
// [global] fall back to them one by one.
func LoadConfig(path string) (Config, error) {
	cfg := Config{Params: DefaultParams(), LogLevel: 30}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, err
	}
	return ParseConfig(data, path)
}

// ParseConfig parses qmemman.conf contents (name is used in errors).
func ParseConfig(data []byte, name string) (Config, error) {
	cfg := Config{Params: DefaultParams(), LogLevel: 30}
	global, err := iniSection(data, "global", name)
	if err != nil || global == nil {
		return cfg, err
	}
	for key, val := range global {
		var err error
		switch key {
		case "vm-min-mem":
			cfg.Params.MinPrefMem, err = ParseSize(val)
		case "dom0-mem-boost":
			cfg.Params.Dom0MemBoost, err = ParseSize(val)
		case "cache-margin-factor":
			cfg.Params.CacheFactor, err = strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err == nil && (cfg.Params.CacheFactor != cfg.Params.CacheFactor || cfg.Params.CacheFactor <= 0) {
				err = fmt.Errorf("must be a positive number")
			}
		case "log-level":
			cfg.LogLevel, err = strconv.Atoi(strings.TrimSpace(val))
		default:
			continue // the reference ignores other keys
		}
		if err != nil {
			return cfg, fmt.Errorf("%s: [global] %s = %q: %w", name, key, val, err)
		}
	}
	return cfg, nil
}

// iniSection returns the keys of one section of an INI file as Python's
// configparser reads them (keys lower-cased, "=" or ":", # and ; comments,
// indented lines continue a value); nil when the section is absent.
func iniSection(data []byte, section, name string) (map[string]string, error) {
	var out map[string]string
	cur := ""
	lastKey := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == section && lastKey != "" {
				out[lastKey] += "\n" + trimmed
			}
			continue
		}
		if trimmed[0] == '[' {
			end := strings.IndexByte(trimmed, ']')
			if end < 0 {
				return nil, fmt.Errorf("%s:%d: bad section header %q", name, n, trimmed)
			}
			cur = trimmed[1:end]
			if cur == section && out == nil {
				out = map[string]string{}
			}
			lastKey = ""
			continue
		}
		if cur == "" {
			return nil, fmt.Errorf("%s:%d: key outside any section", name, n)
		}
		i := strings.IndexAny(trimmed, "=:")
		if i < 0 {
			return nil, fmt.Errorf("%s:%d: %q is not key = value", name, n, trimmed)
		}
		if cur == section {
			lastKey = strings.ToLower(strings.TrimSpace(trimmed[:i]))
			out[lastKey] = strings.TrimSpace(trimmed[i+1:])
		}
	}
	return out, sc.Err()
}

// sizeUnits in the order the reference tries them: K/M/G are decimal.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"K", 1000}, {"KB", 1000}, {"M", 1000 * 1000}, {"MB", 1000 * 1000},
	{"G", 1000 * 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"KI", 1024}, {"KIB", 1024}, {"MI", 1024 * 1024}, {"MIB", 1024 * 1024},
	{"GI", 1024 * 1024 * 1024}, {"GIB", 1024 * 1024 * 1024},
}

// ParseSize is the reference's parse_size: "200M" is 200000000, "200MiB"
// 209715200, plain digits are bytes.
func ParseSize(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if isDigits([]byte(u)) {
		return strconv.ParseInt(u, 10, 64)
	}
	for _, unit := range sizeUnits {
		if num, ok := strings.CutSuffix(u, unit.suffix); ok {
			n, err := pyInt(strings.TrimSpace(num))
			if err != nil {
				return 0, fmt.Errorf("Invalid size: %s.", strings.TrimSpace(s))
			}
			if n > (1<<62)/unit.mult || n < -(1<<62)/unit.mult {
				return 0, fmt.Errorf("size %s is too large", strings.TrimSpace(s))
			}
			return n * unit.mult, nil
		}
	}
	return 0, fmt.Errorf("Invalid size: %s.", strings.TrimSpace(s))
}
