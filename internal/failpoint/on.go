//go:build failpoints

package failpoint

import (
	"os"
	"strings"
)

// Enabled says whether this binary was built with failpoints.
const Enabled = true

// Hit fails as the environment says for the point name, or returns nil.
// The environment is read on every call: points are rare (one per durable
// step) and a test may change it between runs in the same process.
func Hit(name string) error {
	switch action(os.Getenv(EnvVar), name) {
	case "error":
		return &Error{Name: name}
	case "exit":
		os.Exit(ExitStatus)
	}
	return nil
}

func action(spec, name string) string {
	for _, item := range strings.Split(spec, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(item), "="); ok && k == name {
			return v
		}
	}
	return ""
}
