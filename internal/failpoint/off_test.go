//go:build !failpoints

package failpoint

import "testing"

// A release build must never fail on purpose, whatever the environment says.
func TestReleaseBuildIgnoresEnv(t *testing.T) {
	t.Setenv(EnvVar, "x=error,y=exit")
	if Enabled || Hit("x") != nil || Hit("y") != nil {
		t.Fatal("failpoints active in a build without the failpoints tag")
	}
}
