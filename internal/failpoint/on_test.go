//go:build failpoints

package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

func TestHitError(t *testing.T) {
	t.Setenv(EnvVar, "a.b=error, c=exit")
	var fe *Error
	if err := Hit("a.b"); !errors.As(err, &fe) || fe.Name != "a.b" {
		t.Fatalf("Hit(a.b) = %v, want *Error for a.b", err)
	}
	if err := Hit("other"); err != nil {
		t.Fatalf("Hit(other) = %v, want nil (not armed)", err)
	}
}

// TestHitExit runs itself as a child with an `exit` point armed: the child
// must end with ExitStatus before reaching the line after Hit.
func TestHitExit(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		_ = Hit("crash.here")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitExit$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", EnvVar+"=crash.here=exit")
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitStatus {
		t.Fatalf("child ended with %v, want exit status %d", err, ExitStatus)
	}
}
