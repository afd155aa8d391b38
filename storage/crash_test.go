package storage

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
)

// TestMain lets the test binary act as a crash victim: with
// QVM_STORAGE_CRASH_OP set it loops over that operation on the state in
// QVM_STORAGE_CRASH_DIR, the way qvm does it (load, change, save under the
// lock), until the parent kills it.
func TestMain(m *testing.M) {
	if op := os.Getenv("QVM_STORAGE_CRASH_OP"); op != "" {
		if err := crashChild(op, os.Getenv("QVM_STORAGE_CRASH_DIR")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashStore(dir string) *store.Store {
	return &store.Store{Dir: dir, LockTimeout: 10 * time.Second}
}

func crashOpen(app *core.App, dir string) *Storage {
	return Open(app, Options{RunDir: filepath.Join(dir, "run")})
}

func crashChild(op, dir string) error {
	ctx := context.Background()
	s := crashStore(dir)
	for i := 1; ; i++ {
		var removed *core.Domain
		err := s.Update(ctx, func(app *core.App) error {
			st := crashOpen(app, dir)
			work, err := app.Domain("work")
			if err != nil {
				return err
			}
			switch op {
			case "commit":
				if err := st.Start(ctx, work); err != nil {
					return err
				}
				v, _ := st.Volume(work, "private")
				bd, _ := v.BlockDevice()
				f, err := os.OpenFile(bd.Path, os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				_, err = f.WriteAt([]byte(fmt.Sprintf("val-%06d", i)), 0)
				f.Close()
				if err != nil {
					return err
				}
				return st.Stop(ctx, work)
			case "resize":
				v, _ := st.Volume(work, "private")
				return v.Resize(ctx, int64(4+2*(i%2))*mib)
			case "clone":
				// qvm clone, then qvm remove of the copy (xml first, then data).
				name := fmt.Sprintf("copy%d-%d", os.Getpid(), i)
				d, err := app.Clone(work, name, core.CloneOpts{})
				if err != nil {
					return err
				}
				if err := st.Create(ctx, d); err != nil {
					return err
				}
				if err := st.Clone(ctx, work, d); err != nil {
					_ = st.Remove(ctx, d)
					return err
				}
				if i%2 == 0 {
					prev, err := app.Domain(fmt.Sprintf("copy%d-%d", os.Getpid(), i-1))
					if err == nil {
						if err := app.Remove(prev); err != nil {
							return err
						}
						removed = prev
					}
				}
				return nil
			}
			return fmt.Errorf("unknown op %s", op)
		})
		if err != nil {
			return err
		}
		if removed != nil {
			if err := s.Update(ctx, func(app *core.App) error {
				return crashOpen(app, dir).Remove(ctx, removed)
			}); err != nil {
				return err
			}
		}
	}
}

var validData = regexp.MustCompile(`^(val-\d{6}|init\x00{6})$`)

// checkAfterCrash: the state loads, every qube verifies, every private
// image holds a whole committed value, and a start of work uses only
// valid data and leaves no temp or import file.
func checkAfterCrash(t *testing.T, dir string, round int) {
	t.Helper()
	ctx := context.Background()
	err := crashStore(dir).Update(ctx, func(app *core.App) error {
		st := crashOpen(app, dir)
		for _, d := range app.Domains() {
			if !d.IsQubesVM() {
				continue
			}
			if err := st.Verify(ctx, d); err != nil {
				return fmt.Errorf("verify %s: %w", d.Name(), err)
			}
			if d.Name() != "work" && !strings.HasPrefix(d.Name(), "copy") {
				continue
			}
			v, err := st.Volume(d, "private")
			if err != nil {
				return err
			}
			files := []string{v.Path()}
			if d.Name() == "work" { // a copy's revision is its empty image from before the clone
				files = append(files, globRevs(v.Path())...)
			}
			for _, p := range files {
				if got := readAt(t, p, 0, 10); !validData.MatchString(got) {
					return fmt.Errorf("%s holds %q", p, got)
				}
			}
			if n := v.Size(); n != 4*mib && n != 6*mib {
				return fmt.Errorf("%s: size %d", v.Path(), n)
			}
		}
		work, _ := app.Domain("work")
		if err := st.Start(ctx, work); err != nil {
			return fmt.Errorf("start after crash: %w", err)
		}
		v, _ := st.Volume(work, "private")
		bd, _ := v.BlockDevice()
		if got := readAt(t, bd.Path, 0, 10); !validData.MatchString(got) {
			return fmt.Errorf("started image holds %q", got)
		}
		for _, f := range listDir(t, filepath.Join(dir, "appvms", "work")) {
			if strings.Contains(f, "~") || strings.Contains(f, "-import") {
				return fmt.Errorf("stray file after start: %s", f)
			}
		}
		return st.Stop(ctx, work)
	})
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
}

func globRevs(clean string) []string {
	m, _ := filepath.Glob(clean + ".*@*Z")
	return m
}

// TestCrashSafety kills a process at random moments of commit, resize and
// clone (create + copy + remove) on btrfs; after each kill the state must
// be the old or the new one, with no file a later start would misuse.
func TestCrashSafety(t *testing.T) {
	dir := loopFS(t, "btrfs")
	ts := newTestState(t, dir, "file-reflink")
	writeAt(t, ts.path("appvms/work/private.img"), 0, "init")
	_, err := copyFile(context.Background(), ExecRunner{}, ts.path("appvms/work/private.img"), ts.path("appvms/work/private-precache.img"), copyOpts{size: -1, keepMtime: true})
	must(t, err)
	must(t, crashStore(dir).Create(context.Background(), ts.app))
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	for _, op := range []string{"commit", "resize", "clone"} {
		for round := 0; round < 25; round++ {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "QVM_STORAGE_CRASH_OP="+op, "QVM_STORAGE_CRASH_DIR="+dir)
			var out strings.Builder
			cmd.Stderr = &out
			must(t, cmd.Start())
			time.Sleep(time.Duration(10+rng.Intn(60)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
				t.Fatalf("%s: child ended by itself (%v): %s", op, err, out.String())
			}
			checkAfterCrash(t, dir, round)
		}
	}
}
