package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/qvm-dev/qvm/internal/scripttest"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/storage"
)

// TestStorageScript runs commands/testdata/storage/*.txtar: the volume
// side of create/clone/remove and qvm volume as a user sees it, on real
// filesystems (loop-mounted btrfs where reflinks matter).
func TestStorageScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/storage",
		Setup: func(e *testscript.Env) error {
			e.Setenv("QVM_STATE_DIR", e.WorkDir+"/state")
			e.Setenv("QVM_CONFIG", e.WorkDir+"/qvm.yaml")
			e.Setenv("QVM_RUN_DIR", e.WorkDir+"/run")
			// storagestart simulates a running qube by its storage alone; with
			// no hypervisor to ask, qvm's lazy reconcile leaves it started.
			e.Setenv("QVM_LIBVIRT_URI", "nosuch:///storage-tests-have-no-hypervisor")
			return nil
		},
		// [loopfs:TYPE]: a TYPE filesystem can be made and loop-mounted here
		// (mkfs.TYPE installed, root, loop devices).
		Condition: func(cond string) (bool, error) {
			fstype, ok := strings.CutPrefix(cond, "loopfs:")
			if !ok {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			return canLoopMount(fstype), nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":     scripttest.Exitcode,
			"mountfs":      scriptMountFS,
			"writeat":      scriptWriteAt,
			"readat":       scriptReadAt,
			"shared":       scriptShared,
			"filesize":     scriptFileSize,
			"samedata":     scriptSameData,
			"storagestart": func(ts *testscript.TestScript, neg bool, args []string) { scriptStorage(ts, neg, args, true) },
			"storagestop":  func(ts *testscript.TestScript, neg bool, args []string) { scriptStorage(ts, neg, args, false) },
		},
	})
}

var loopProbe sync.Map // fstype -> bool

// canLoopMount tries once per filesystem type to make and mount a small
// loop filesystem (mkfs installed, root, a free loop device).
func canLoopMount(fstype string) bool {
	if v, ok := loopProbe.Load(fstype); ok {
		return v.(bool)
	}
	ok := func() bool {
		if _, err := exec.LookPath("mkfs." + fstype); err != nil || os.Geteuid() != 0 {
			return false
		}
		dir, err := os.MkdirTemp("", "qvm-loopprobe-")
		if err != nil {
			return false
		}
		defer os.RemoveAll(dir)
		img := dir + "/fs.img"
		f, err := os.Create(img)
		if err != nil || f.Truncate(400<<20) != nil {
			return false
		}
		f.Close()
		args := []string{"-q", img}
		if strings.HasPrefix(fstype, "ext") {
			args = []string{"-q", "-F", img}
		}
		if exec.Command("mkfs."+fstype, args...).Run() != nil {
			return false
		}
		mnt := dir + "/mnt"
		if os.Mkdir(mnt, 0o755) != nil || exec.Command("mount", "-o", "loop", img, mnt).Run() != nil {
			return false
		}
		return exec.Command("umount", mnt).Run() == nil
	}()
	loopProbe.Store(fstype, ok)
	return ok
}

// mountfs TYPE DIR: a fresh loop-mounted filesystem at $WORK/DIR (scripts
// guard it with [!loopfs:TYPE] skip 'reason').
func scriptMountFS(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: mountfs TYPE DIR")
	}
	fstype, mnt := args[0], ts.MkAbs(args[1])
	img := ts.MkAbs(".fs-" + fstype + ".img")
	f, err := os.Create(img)
	ts.Check(err)
	ts.Check(f.Truncate(400 << 20))
	f.Close()
	mk := []string{"-q", img}
	if strings.HasPrefix(fstype, "ext") {
		mk = []string{"-q", "-F", img}
	}
	if out, err := exec.Command("mkfs."+fstype, mk...).CombinedOutput(); err != nil {
		ts.Fatalf("mkfs.%s failed: %v: %s", fstype, err, out)
	}
	ts.Check(os.MkdirAll(mnt, 0o755))
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		ts.Fatalf("cannot mount a loop %s filesystem: %v: %s", fstype, err, out)
	}
	ts.Defer(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			ts.Logf("umount %s: %v: %s", mnt, err, out)
		}
	})
}

// writeat FILE OFFSET TEXT: overwrite bytes inside an existing file.
func scriptWriteAt(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: writeat FILE OFFSET TEXT")
	}
	off, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_WRONLY, 0)
	ts.Check(err)
	defer f.Close()
	_, err = f.WriteAt([]byte(args[2]), off)
	ts.Check(err)
}

// readat FILE OFFSET TEXT: the file holds TEXT at OFFSET.
func scriptReadAt(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: readat FILE OFFSET TEXT")
	}
	off, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	f, err := os.Open(ts.MkAbs(args[0]))
	ts.Check(err)
	defer f.Close()
	b := make([]byte, len(args[2]))
	_, _ = f.ReadAt(b, off)
	if (string(b) == args[2]) == neg {
		ts.Fatalf("%s at %d holds %q (want %s%q)", args[0], off, b, map[bool]string{true: "not ", false: ""}[neg], args[2])
	}
}

// shared FILE: filefrag marks an extent of FILE shared (a reflink copy).
func scriptShared(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: shared FILE")
	}
	out, err := exec.Command("filefrag", "-v", ts.MkAbs(args[0])).CombinedOutput()
	if err != nil {
		ts.Fatalf("filefrag (e2fsprogs) failed: %v: %s", err, out)
	}
	if strings.Contains(string(out), "shared") == neg {
		ts.Fatalf("%s: shared extents %v, want %v\n%s", args[0], !neg, neg, out)
	}
}

// filesize FILE N: the apparent size of FILE is N bytes.
func scriptFileSize(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: filesize FILE N")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if (strconv.FormatInt(fi.Size(), 10) == args[1]) == neg {
		ts.Fatalf("%s is %d bytes", args[0], fi.Size())
	}
}

func fileHash(ts *testscript.TestScript, p string) string {
	f, err := os.Open(ts.MkAbs(p))
	ts.Check(err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	ts.Check(err)
	return hex.EncodeToString(h.Sum(nil))
}

// samedata A B: the two files have the same content (streamed sha256).
func scriptSameData(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: samedata A B")
	}
	if (fileHash(ts, args[0]) == fileHash(ts, args[1])) == neg {
		ts.Fatalf("%s and %s: same content %v, want %v", args[0], args[1], !neg, neg)
	}
}

// storagestart/storagestop VM: the storage side of qvm start/shutdown
// (what the start code calls), so commits and revisions can be made here.
func scriptStorage(ts *testscript.TestScript, neg bool, args []string, start bool) {
	if len(args) != 1 {
		ts.Fatalf("usage: storagestart|storagestop VM")
	}
	s := &store.Store{Dir: ts.Getenv("QVM_STATE_DIR"), LockTimeout: 10 * time.Second}
	err := s.Update(context.Background(), func(app *core.App) error {
		d, err := app.Domain(args[0])
		if err != nil {
			return err
		}
		st := storage.Open(app, storage.Options{RunDir: ts.Getenv("QVM_RUN_DIR")})
		if start {
			if err := st.Verify(context.Background(), d); err != nil {
				return err
			}
			return st.Start(context.Background(), d)
		}
		return st.Stop(context.Background(), d)
	})
	if (err == nil) == neg {
		ts.Fatalf("storage start=%v %s: %v", start, args[0], err)
	}
	if err != nil {
		ts.Logf("%v", err)
	}
}
