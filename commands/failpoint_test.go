//go:build failpoints

package commands

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/internal/failpoint"
)

// durableStep is one place where a crash or an I/O error must leave the
// state as it was: the command runs with the point armed, then the state
// must load and hold no reference to anything half made.
type durableStep struct {
	point string
	setup [][]string // qvm commands run before, unarmed
	run   []string   // the command that reaches the point
}

var durableSteps = []durableStep{
	{
		point: store.FailpointWrite,
		setup: [][]string{{"create", "-C", "TemplateVM", "-l", "black", "tpl"}, {"create", "-l", "red", "-t", "tpl", "app"}},
		run:   []string{"prefs", "app", "memory", "500"},
	},
}

// TestFailpoints drives every durable step with an injected error and with
// a crash (the process ends at that instant) and checks the invariant.
func TestFailpoints(t *testing.T) {
	for _, step := range durableSteps {
		for _, action := range []string{"error", "exit"} {
			t.Run(step.point+"="+action, func(t *testing.T) {
				dir := t.TempDir()
				runQvm(t, dir, "init", "--reflink", "no")
				for _, s := range step.setup {
					runQvm(t, dir, s...)
				}
				xml := filepath.Join(dir, "qubes.xml")
				before, err := os.ReadFile(xml)
				if err != nil {
					t.Fatal(err)
				}
				cmd := qvmProc(dir, step.run...)
				cmd.Env = append(cmd.Env, failpoint.EnvVar+"="+step.point+"="+action)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("qvm %v with %s armed: %v, want a failure\n%s", step.run, step.point, err, out)
				}
				switch action {
				case "error":
					if ee.ExitCode() != 1 || !strings.Contains(string(out), "failpoint "+step.point) {
						t.Fatalf("exit %d, output %q: want exit 1 and the failure named", ee.ExitCode(), out)
					}
				case "exit":
					if ee.ExitCode() != failpoint.ExitStatus {
						t.Fatalf("exit %d, want %d (crash)", ee.ExitCode(), failpoint.ExitStatus)
					}
				}
				after, err := os.ReadFile(xml)
				if err != nil {
					t.Fatal(err)
				}
				if string(after) != string(before) {
					t.Fatalf("qubes.xml changed although the write failed")
				}
				// The state loads; after an error nothing is left over, after
				// a crash check names exactly the interrupted write's temp file.
				check := qvmProc(dir, "check")
				cout, cerr := check.CombinedOutput()
				if action == "error" {
					if cerr != nil {
						t.Fatalf("qvm check after an injected error: %v\n%s", cerr, cout)
					}
					return
				}
				if !errors.As(cerr, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(cout), "temp file of an interrupted qubes.xml write") {
					t.Fatalf("qvm check after a crash: %v\n%s", cerr, cout)
				}
			})
		}
	}
}
