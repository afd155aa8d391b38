package commands

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
)

// qvmProc runs this test binary as qvm on stateDir.
func qvmProc(stateDir string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "QVM_TEST_AS_QVM=1", "QVM_STATE_DIR="+stateDir, "QVM_CONFIG=/nonexistent")
	return cmd
}

func runQvm(t *testing.T, stateDir string, args ...string) string {
	t.Helper()
	out, err := qvmProc(stateDir, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qvm %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// 50 processes create qubes and set properties at once: every change that
// reported success is in the final file, and the file is valid.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var args []string
			if i%2 == 0 {
				args = []string{"create", "-C", "StandaloneVM", "-l", "red", fmt.Sprintf("vm%d", i)}
			} else {
				args = []string{"prefs", "tpl", "memory", strconv.Itoa(1000 + i)}
				// Each odd process also makes a qube of its own, so no change can hide another.
				if out, err := qvmProc(dir, "create", "-C", "StandaloneVM", "-l", "blue", fmt.Sprintf("vm%d", i)).CombinedOutput(); err != nil {
					errs <- fmt.Errorf("%v: %v %s", args, err, out)
					return
				}
			}
			if out, err := qvmProc(dir, args...).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%v: %v %s", args, err, out)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	names := runQvm(t, dir, "ls", "--raw-list")
	for i := 0; i < n; i++ {
		if !strings.Contains(names, fmt.Sprintf("vm%d\n", i)) {
			t.Errorf("vm%d lost", i)
		}
	}
	mem := strings.TrimSpace(runQvm(t, dir, "prefs", "tpl", "memory"))
	if m, _ := strconv.Atoi(mem); m < 1000 || m >= 1000+n || m%2 == 0 {
		t.Errorf("memory %q is not one of the values written", mem)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "qubes.xml"))
	if _, err := core.Parse(data, "qubes.xml", dir, core.Host{}); err != nil {
		t.Fatal(err)
	}
}

// A writer killed with SIGKILL at random moments leaves qubes.xml as the
// complete old or the complete new document, never anything in between.
func TestKillDuringWrite(t *testing.T) {
	dir := t.TempDir()
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	// A bigger file widens the window in which a kill lands mid-write.
	for i := 0; i < 30; i++ {
		runQvm(t, dir, "create", "-C", "StandaloneVM", "-l", "red", fmt.Sprintf("pad%d", i))
	}
	path := filepath.Join(dir, "qubes.xml")
	rng := rand.New(rand.NewSource(1))
	prev, _ := os.ReadFile(path)
	runs := 200
	if testing.Short() {
		runs = 40
	}
	killedMidway := 0
	for i := 0; i < runs; i++ {
		cmd := qvmProc(dir, "prefs", "tpl", "memory", strconv.Itoa(2000+i))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Intn(8000)) * time.Microsecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && !ee.Exited() {
			killedMidway++
		}
		cur, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatalf("run %d: %v", i, rerr)
		}
		app, perr := core.Parse(cur, path, dir, core.Host{})
		if perr != nil {
			t.Fatalf("run %d: torn qubes.xml: %v", i, perr)
		}
		if !bytes.Equal(cur, prev) {
			tpl, _ := app.Domain("tpl")
			if v, _ := app.Get(tpl, "memory"); v.S != strconv.Itoa(2000+i) {
				t.Fatalf("run %d: file changed but memory is %s", i, v.S)
			}
		}
		prev = cur
	}
	t.Logf("%d of %d writers were killed before they finished", killedMidway, runs)
	if killedMidway == 0 {
		t.Fatal("no writer was killed mid-way: the test did not test anything")
	}
}

// A writer that cannot get the lock in time gives up with a clear message
// and changes nothing.
func TestLockTimeout(t *testing.T) {
	dir := t.TempDir()
	runQvm(t, dir, "init", "--reflink", "no")
	lock, err := os.OpenFile(filepath.Join(dir, "qubes.xml.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "qubes.xml"))
	out, err := qvmProc(dir, "--lock-timeout", "300ms", "prefs", "dom0", "label", "red").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v %s", err, out)
	}
	want := "qvm prefs: error: timed out after 300ms waiting for the lock on " + filepath.Join(dir, "qubes.xml")
	if !strings.HasPrefix(string(out), want) {
		t.Fatalf("got %q\nwant prefix %q", out, want)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "qubes.xml"))
	if !bytes.Equal(before, after) {
		t.Fatal("qubes.xml changed")
	}
	// Readers share the lock and are not blocked by another reader.
	runQvm(t, dir, "--lock-timeout", "300ms", "ls", "--raw-list")
}

// A POSIX record lock on qubes.xml (what a real qubesd takes with lockf
// while it saves) holds our write back until it is released.
func TestQubesdRecordLockExcludesWriter(t *testing.T) {
	dir := t.TempDir()
	runQvm(t, dir, "init", "--reflink", "no")
	f, err := os.OpenFile(filepath.Join(dir, "qubes.xml"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	cmd := qvmProc(dir, "prefs", "dom0", "label", "red")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("writer finished while the record lock was held: %v %s", err, out.String())
	case <-time.After(500 * time.Millisecond):
	}
	f.Close() // releases the record lock
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v %s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writer did not finish after the lock was released")
	}
	if got := strings.TrimSpace(runQvm(t, dir, "prefs", "dom0", "label")); got != "red" {
		t.Fatalf("label %q", got)
	}
}
