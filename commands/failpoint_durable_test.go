//go:build failpoints

package commands

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qvm-dev/qvm/backup"
	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/firewall"
	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/storage"
)

// durableStepList names every durable step of qvm, the places where a
// crash or an I/O error must leave the state loadable with nothing half
// made referenced. TestFailpointsDurableSteps fails when one of them has no
// scenario or its failpoint is never hit.
var durableStepList = []string{
	store.FailpointWrite,    // qubes.xml replaced (any change, and restore's final update)
	firewall.FailpointWrite, // firewall.xml replaced
	storage.FailpointCreate, // a new qube's volume made
	storage.FailpointCopy,   // a cloned volume copied, before its rename into place
	storage.FailpointCommit, // revision rotation: old revisions pruned, the new state not yet in place
	storage.FailpointImport, // imported data written, before its commit
	storage.FailpointRemove, // a removed qube's volume deleted
	backup.FailpointChunk,   // a sealed backup chunk appended to the archive
	FailpointRestoreImport,  // a restored volume's data imported
	FailpointRestoreCommit,  // every restored volume in place, before the final qubes.xml update
}

type durableScenario struct {
	point string
	name  string
	run   []string // NEW: new data file; BACKUP: the backup made in setup; DEST: the backup directory
	// xmlKept: qubes.xml keeps its bytes (false for remove, whose removal stands).
	xmlKept bool
	// restore: the setup makes a backup of work and removes work, so the
	// command can restore it.
	restore bool
	// errorLeaves: after an injected error, qvm check may still name an
	// unused directory (remove: the volume that could not be deleted).
	errorLeaves bool
	// errorWarns: an injected error is a warning and the command succeeds
	// (remove: the qube is gone from qubes.xml, as the reference does).
	errorWarns bool
	// rerun: the same command must work once the orphans are removed.
	rerun bool
	after func(t *testing.T, dir, action string)
}

func durableScenarios() []durableScenario {
	return []durableScenario{
		{point: store.FailpointWrite, name: "prefs", run: []string{"prefs", "work", "memory", "500"}, xmlKept: true, rerun: true},
		{point: store.FailpointWrite, name: "restore", run: []string{"restore", "-p", "PW", "BACKUP"}, xmlKept: true, restore: true, rerun: true},
		{point: firewall.FailpointWrite, name: "firewall", run: []string{"firewall", "work", "add", "drop", "proto=icmp"}, xmlKept: true, rerun: true,
			after: func(t *testing.T, dir, _ string) {
				if _, err := os.Stat(filepath.Join(dir, "rl/appvms/work/firewall.xml")); err == nil {
					t.Error("firewall.xml written although its write failed")
				}
				if _, err := os.Stat(filepath.Join(dir, "appvms/work/firewall.xml")); err == nil {
					t.Error("firewall.xml written although its write failed")
				}
			}},
		{point: storage.FailpointCreate, name: "create", run: []string{"create", "-C", "TemplateVM", "-l", "black", "t2"}, xmlKept: true, rerun: true},
		{point: storage.FailpointCopy, name: "clone", run: []string{"clone", "work", "copy"}, xmlKept: true, rerun: true},
		{point: storage.FailpointCommit, name: "import", run: []string{"volume", "import", "work:private", "NEW"}, xmlKept: true, rerun: true, after: keptData},
		{point: storage.FailpointImport, name: "import", run: []string{"volume", "import", "work:private", "NEW"}, xmlKept: true, rerun: true, after: keptData},
		{point: storage.FailpointRemove, name: "remove", run: []string{"remove", "-f", "work"}, errorLeaves: true, errorWarns: true},
		{point: backup.FailpointChunk, name: "backup", run: []string{"backup", "-y", "-p", "PW", "--scrypt-params", "10:8:1", "DEST", "work"}, xmlKept: true, rerun: true,
			after: func(t *testing.T, dir, action string) {
				ents, _ := os.ReadDir(filepath.Join(dir, "dest"))
				for _, e := range ents {
					if !strings.HasSuffix(e.Name(), ".part~") || action == "error" {
						t.Errorf("failed backup left %s in the destination", e.Name())
					}
					// A crash leaves the temp archive (never a complete name);
					// the user deletes it.
					os.Remove(filepath.Join(dir, "dest", e.Name()))
				}
			}},
		{point: FailpointRestoreImport, name: "restore", run: []string{"restore", "-p", "PW", "BACKUP"}, xmlKept: true, restore: true, rerun: true},
		{point: FailpointRestoreCommit, name: "restore", run: []string{"restore", "-p", "PW", "BACKUP"}, xmlKept: true, restore: true, rerun: true},
	}
}

// keptData: work's private volume still holds the data imported in setup.
func keptData(t *testing.T, dir, _ string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, "rl/appvms/work/private.img"))
	if err != nil || !strings.HasPrefix(string(got), "old volume content") {
		t.Errorf("work:private lost its old data (%v)", err)
	}
}

// TestFailpointsDurableSteps drives every step of durableStepList with an injected
// error and with a crash at that instant, then checks the invariant: the
// command fails (exit 1 naming the failpoint, or the crash status), the
// state loads, qubes.xml is unchanged (the step's change is all or
// nothing), every volume qubes.xml references exists, qvm check finds no
// inconsistency and at most orphan files, which qvm check
// --remove-orphans deletes so the next qvm check is clean; then the same
// command works.
func TestFailpointsDurableSteps(t *testing.T) {
	hit := map[string]map[string]bool{}
	for _, sc := range durableScenarios() {
		for _, action := range []string{"error", "exit"} {
			t.Run(sc.point+"="+action+"/"+sc.name, func(t *testing.T) {
				dir := t.TempDir()
				pw := filepath.Join(dir, "pw")
				must(t, os.WriteFile(pw, []byte("failpoint passphrase\n"), 0o600))
				must(t, os.Mkdir(filepath.Join(dir, "dest"), 0o755))
				runQvm(t, dir, "init", "--reflink", "no")
				runQvm(t, dir, "pool", "add", "rl", "file-reflink", "-o", "dir_path="+dir+"/rl", "-o", "setup_check=False")
				runQvm(t, dir, "prefs", "--global", "default_pool", "rl")
				runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
				runQvm(t, dir, "create", "-l", "red", "-t", "tpl", "work")
				old, newData := filepath.Join(dir, "old.dat"), filepath.Join(dir, "new.dat")
				must(t, os.WriteFile(old, []byte("old volume content"), 0o644))
				must(t, os.WriteFile(newData, []byte("new volume content, longer"), 0o644))
				runQvm(t, dir, "volume", "import", "work:private", old)
				bk := ""
				if sc.restore {
					bdir := filepath.Join(dir, "bk")
					must(t, os.Mkdir(bdir, 0o755))
					runQvm(t, dir, "backup", "-y", "-q", "-p", pw, "--scrypt-params", "10:8:1", bdir, "work")
					ents, err := os.ReadDir(bdir)
					must(t, err)
					if len(ents) != 1 {
						t.Fatalf("backup made %d files", len(ents))
					}
					bk = filepath.Join(bdir, ents[0].Name())
					runQvm(t, dir, "remove", "-f", "work")
				}
				args := append([]string(nil), sc.run...)
				for i, a := range args {
					switch a {
					case "NEW":
						args[i] = newData
					case "PW":
						args[i] = pw
					case "BACKUP":
						args[i] = bk
					case "DEST":
						args[i] = filepath.Join(dir, "dest")
					}
				}
				xml := filepath.Join(dir, "qubes.xml")
				before, err := os.ReadFile(xml)
				must(t, err)

				cmd := qvmProc(dir, args...)
				cmd.Env = append(cmd.Env, "QVM_RUN_DIR="+dir+"/run", "QVM_FAILPOINTS="+sc.point+"="+action)
				out, err := cmd.CombinedOutput()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				switch action {
				case "error":
					if code == 0 && !sc.errorWarns || !strings.Contains(string(out), "failpoint "+sc.point) {
						t.Fatalf("failpoint %s never hit by qvm %v (exit %d):\n%s", sc.point, sc.run, code, out)
					}
					if sc.xmlKept && code != 1 {
						t.Fatalf("exit %d, want 1:\n%s", code, out)
					}
				case "exit":
					if code != 77 {
						t.Fatalf("failpoint %s never hit by qvm %v (exit %d, want the crash status 77):\n%s", sc.point, sc.run, code, out)
					}
				}
				if hit[sc.point] == nil {
					hit[sc.point] = map[string]bool{}
				}
				hit[sc.point][action] = true

				after, err := os.ReadFile(xml)
				must(t, err)
				if sc.xmlKept && string(after) != string(before) {
					t.Fatalf("qubes.xml changed although qvm %v failed at %s", sc.run, sc.point)
				}
				app, err := core.Parse(after, xml, dir, core.Host{})
				if err != nil {
					t.Fatalf("state does not load after the failure: %v", err)
				}
				referencedVolumesExist(t, dir, app)
				if sc.after != nil {
					sc.after(t, dir, action)
				}
				findings := checkFindings(t, dir)
				for _, f := range findings {
					if f.Kind != "orphan" {
						t.Errorf("qvm check after the failure: %s: %s: %s", f.Kind, f.What, f.Msg)
					}
				}
				if action == "error" && !sc.errorLeaves && len(findings) > 0 {
					t.Errorf("an injected error left %d orphans, first %s (%s)", len(findings), findings[0].What, findings[0].Msg)
				}
				if out, err := qvmProc(dir, "check", "--remove-orphans").CombinedOutput(); err != nil {
					t.Fatalf("qvm check --remove-orphans: %v\n%s", err, out)
				}
				if f := checkFindings(t, dir); len(f) > 0 {
					t.Fatalf("orphans remain after qvm check --remove-orphans: %+v", f)
				}
				if sc.rerun {
					rc := qvmProc(dir, args...)
					rc.Env = append(rc.Env, "QVM_RUN_DIR="+dir+"/run")
					if out, err := rc.CombinedOutput(); err != nil {
						t.Fatalf("qvm %v after the failure: %v\n%s", sc.run, err, out)
					}
					if f := checkFindings(t, dir); len(f) > 0 {
						t.Fatalf("qvm check after the rerun: %+v", f)
					}
				}
			})
		}
	}
	for _, p := range durableStepList {
		for _, action := range []string{"error", "exit"} {
			if !hit[p][action] {
				t.Errorf("durable step %s: no scenario hit it with %s", p, action)
			}
		}
	}
}

// checkFindings runs qvm check --format json.
func checkFindings(t *testing.T, dir string) []core.Finding {
	t.Helper()
	out, err := qvmProc(dir, "check", "--format", "json").Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("qvm check: %v\n%s", err, out)
	}
	var f []core.Finding
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("qvm check --format json: %v\n%s", err, out)
	}
	return f
}

// referencedVolumesExist: every persistent volume of a file pool that
// qubes.xml names has its image (nothing half made is referenced).
func referencedVolumesExist(t *testing.T, dir string, app *core.App) {
	t.Helper()
	poolDir := map[string]string{"varlibqubes": dir, "rl": filepath.Join(dir, "rl")}
	for _, d := range app.Domains() {
		for _, v := range d.Volumes {
			root, ok := poolDir[v.Pool]
			if !ok || v.Vid == "" || v.SnapOnStart || !v.SaveOnStop && !v.RW {
				continue
			}
			if v.Name == "volatile" {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, v.Vid+".img")); err != nil {
				t.Errorf("%s:%s referenced by qubes.xml, but %v", d.Name(), v.Name, err)
			}
		}
	}
}
