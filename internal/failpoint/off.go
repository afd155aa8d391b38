//go:build !failpoints

package failpoint

// Enabled says whether this binary was built with failpoints.
const Enabled = false

// Hit does nothing in a release build.
func Hit(string) error { return nil }
