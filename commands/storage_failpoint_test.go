//go:build failpoints

package commands

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/internal/failpoint"
	"github.com/qvm-dev/qvm/storage"
)

// TestStorageFailpoints drives the storage layer's durable steps with an
// injected error and with a crash at that instant: qvm create, clone,
// volume import and remove must leave qubes.xml as it was (or, for
// remove, without the qube), the old data intact, nothing but an unused
// directory that qvm check names, and the same command must work again.
func TestStorageFailpoints(t *testing.T) {
	steps := []struct {
		point string
		run   []string
		// xmlKept: qubes.xml is unchanged by the failed command.
		xmlKept bool
		// after checks the files once the command failed.
		after func(t *testing.T, dir, action string)
	}{
		{storage.FailpointCreate, []string{"create", "-C", "TemplateVM", "-l", "black", "t2"}, true, func(t *testing.T, dir, action string) {
			if action == "error" {
				mustMiss(t, filepath.Join(dir, "rl/vm-templates/t2"), filepath.Join(dir, "vm-templates/t2"))
			}
		}},
		{storage.FailpointCopy, []string{"clone", "work", "copy"}, true, func(t *testing.T, dir, action string) {
			if action == "error" {
				mustMiss(t, filepath.Join(dir, "rl/appvms/copy"), filepath.Join(dir, "appvms/copy"))
			}
		}},
		{storage.FailpointImport, []string{"volume", "import", "work:private", "NEW"}, true, oldData},
		{storage.FailpointCommit, []string{"volume", "import", "work:private", "NEW"}, true, oldData},
		{storage.FailpointCopy, []string{"volume", "resize", "work:private", "1MiB"}, true, oldData},
		{storage.FailpointRemove, []string{"remove", "-f", "work"}, false, nil},
	}
	for _, step := range steps {
		for _, action := range []string{"error", "exit"} {
			t.Run(step.point+"="+action+"/"+step.run[0], func(t *testing.T) {
				dir := t.TempDir()
				runQvm(t, dir, "init", "--reflink", "no")
				runQvm(t, dir, "pool", "add", "rl", "file-reflink", "-o", "dir_path="+dir+"/rl", "-o", "setup_check=False")
				runQvm(t, dir, "prefs", "--global", "default_pool", "rl")
				runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
				runQvm(t, dir, "create", "-l", "red", "-t", "tpl", "work")
				old, newData := filepath.Join(dir, "old.dat"), filepath.Join(dir, "new.dat")
				must(t, os.WriteFile(old, []byte("old volume content"), 0o644))
				must(t, os.WriteFile(newData, []byte("new volume content, longer"), 0o644))
				runQvm(t, dir, "volume", "import", "work:private", old)
				xml := filepath.Join(dir, "qubes.xml")
				before, err := os.ReadFile(xml)
				must(t, err)
				args := append([]string(nil), step.run...)
				for i, a := range args {
					if a == "NEW" {
						args[i] = newData
					}
				}
				cmd := qvmProc(dir, args...)
				cmd.Env = append(cmd.Env, "QVM_RUN_DIR="+dir+"/run", failpoint.EnvVar+"="+step.point+"="+action)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				code := 0
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				switch {
				case action == "exit" && code != failpoint.ExitStatus:
					t.Fatalf("exit %d, want %d (crash): %s", code, failpoint.ExitStatus, out)
				case action == "error" && !strings.Contains(string(out), "failpoint "+step.point):
					t.Fatalf("exit %d, output %q: want the failure named", code, out)
				case action == "error" && step.xmlKept && code != 1:
					t.Fatalf("exit %d, want 1: %s", code, out)
				}
				after, err := os.ReadFile(xml)
				must(t, err)
				if step.xmlKept && string(after) != string(before) {
					t.Fatalf("qubes.xml changed although %v failed", step.run)
				}
				if step.after != nil {
					step.after(t, dir, action)
				}
				// The state loads and anything stray is a directory of no qube
				// or a temp/import file a later start or import removes.
				cout, cerr := qvmProc(dir, "check").CombinedOutput()
				if cerr != nil {
					for _, l := range strings.Split(strings.TrimSpace(string(cout)), "\n") {
						if !strings.HasPrefix(l, "orphan: ") || !(strings.Contains(l, "directory of no qube") ||
							strings.Contains(l, "temp file of an interrupted volume write") || strings.Contains(l, "data of an interrupted import")) {
							t.Errorf("qvm check after the failure: %s", l)
						}
					}
				}
				// The same command works now (remove: the qube can be made again).
				redo := args
				if step.run[0] == "remove" {
					if strings.Contains(string(after), `name="work"`) {
						t.Fatal("remove failed before qubes.xml dropped the qube")
					}
					redo = []string{"create", "-l", "red", "-t", "tpl", "work"}
				}
				rc := qvmProc(dir, redo...)
				rc.Env = append(rc.Env, "QVM_RUN_DIR="+dir+"/run")
				if out, err := rc.CombinedOutput(); err != nil {
					t.Fatalf("qvm %v after the failure: %v\n%s", redo, err, out)
				}
			})
		}
	}
}

func mustMiss(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
}

// oldData: work's private still holds what it held before the command.
func oldData(t *testing.T, dir, _ string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, "rl/appvms/work/private.img"))
	must(t, err)
	if string(got) != "old volume content" {
		t.Errorf("private holds %q", got)
	}
}
