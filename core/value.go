package core

import (
	"strconv"
	"strings"
)

// Value is a property value in its saved text form; None is Python's None
// (an unset VM reference, an absent timestamp).
type Value struct {
	S    string
	None bool
}

// None is the None value.
var none = Value{None: true}

func str(s string) Value { return Value{S: s} }

func boolValue(b bool) Value {
	if b {
		return str("True")
	}
	return str("False")
}

func intValue(n int64) Value { return str(strconv.FormatInt(n, 10)) }

// String is what qvm-prefs prints: Python's str() of the value.
func (v Value) String() string {
	if v.None {
		return "None"
	}
	return v.S
}

// Bool reads a saved bool ("True"/"False").
func (v Value) Bool() bool { return !v.None && v.S == "True" }

// Int reads a saved int; None and garbage read as 0.
func (v Value) Int() int64 {
	n, _ := strconv.ParseInt(v.S, 10, 64)
	return n
}

// ParseBool follows the reference bool setter: 0/no/false/off and
// 1/yes/true/on, case-insensitively.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "0", "no", "false", "off":
		return false, nil
	case "1", "yes", "true", "on":
		return true, nil
	}
	return false, valueErrorf("Invalid literal for boolean property: '%s'", s)
}

// parseInt follows Python int() on a string: surrounding whitespace, sign
// and '_' between digits; the range is int64 (larger values are refused
// instead of overflowing).
func parseInt(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t != "" && !strings.HasPrefix(t, "_") && !strings.HasSuffix(t, "_") && !strings.Contains(t, "__") {
		t = strings.ReplaceAll(t, "_", "")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, valueErrorf("value %s is out of range", strings.TrimSpace(s))
		}
		return 0, valueErrorf("invalid literal for int() with base 10: '%s'", s)
	}
	return n, nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f' || c > 0x7e {
			return false
		}
	}
	return true
}
