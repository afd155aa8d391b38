package virt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary be its own helper, serving fakeHV.
func TestMain(m *testing.M) {
	if os.Getenv(EnvHelperChild) == "1" {
		if err := Serve(context.Background(), os.Stdin, os.Stdout, openFake); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("VIRT_TEST_OPEN_AND_EXIT") == "1" {
		// As a qvm that dies without closing: print the helper's pid.
		c, err := Open(context.Background(), Config{URI: "fake:///ok", Helper: os.Args[0]})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pid, _ := c.State(context.Background(), "pid")
		fmt.Println(pid)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeHV knows one running domain, "work"; "slow" hangs; "crash" exits.
type fakeHV struct{ running map[string]State }

func openFake(ctx context.Context, cfg Config) (Hypervisor, error) {
	switch cfg.URI {
	case "fake:///locked":
		return nil, &LockTimeoutError{Root: "/r", Timeout: time.Second, Holder: 42}
	case "fake:///bad":
		return nil, fmt.Errorf("connect to %s: %w", cfg.URI, &Error{Code: 38, Domain: 7, Message: "no driver"})
	}
	return &fakeHV{running: map[string]State{"work": Running}}, nil
}

func (f *fakeHV) States(context.Context) (map[string]State, error) { return f.running, nil }
func (f *fakeHV) State(name string) (State, error) {
	switch name {
	case "slow":
		time.Sleep(time.Hour)
	case "crash":
		os.Exit(3)
	case "pid":
		return State(strconv.Itoa(os.Getpid())), nil
	}
	if s, ok := f.running[name]; ok {
		return s, nil
	}
	return Halted, nil
}
func (f *fakeHV) CreatePaused(x string) (string, error) {
	if x == "" {
		return "", fmt.Errorf("define domain: %w", &Error{Code: 1, Domain: 10, Message: "bad XML"})
	}
	f.running[x] = Paused
	return x, nil
}
func (f *fakeHV) op(name string, to State) error {
	if _, ok := f.running[name]; !ok {
		return &NotRunningError{Name: name}
	}
	f.running[name] = to
	return nil
}
func (f *fakeHV) Resume(n string) error   { return f.op(n, Running) }
func (f *fakeHV) Suspend(n string) error  { return f.op(n, Paused) }
func (f *fakeHV) Shutdown(n string) error { return f.op(n, Halting) }
func (f *fakeHV) Destroy(n string) error {
	err := f.op(n, Halted)
	delete(f.running, n)
	return err
}
func (f *fakeHV) Undefine(string) error { return nil }
func (f *fakeHV) XMLDesc(n string) (string, error) {
	return "<domain><name>" + n + "</name></domain>", f.op(n, f.running[n])
}
func (f *fakeHV) AttachDevice(n, x string) error { return errors.New("attach refused: " + x) }
func (f *fakeHV) DetachDevice(n, x string) error { return f.op(n, f.running[n]) }
func (f *fakeHV) Close() error                   { return nil }

func openHelper(t *testing.T, uri string) (*Conn, error) {
	t.Helper()
	return Open(context.Background(), Config{URI: uri, Helper: os.Args[0]})
}

// The requests and their answers cross the pipe with their types: states,
// NotRunningError, libvirt's code and message, wrapped text.
func TestHelperPipe(t *testing.T) {
	c, err := openHelper(t, "fake:///ok")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if st, err := c.States(ctx); err != nil || st["work"] != Running || len(st) != 1 {
		t.Fatalf("States = %v %v", st, err)
	}
	if name, err := c.CreatePaused(ctx, "new"); err != nil || name != "new" {
		t.Fatalf("CreatePaused = %q %v", name, err)
	}
	if st, _ := c.State(ctx, "new"); st != Paused {
		t.Fatalf("new is %v, want Paused", st)
	}
	_, err = c.CreatePaused(ctx, "")
	var le *Error
	if !errors.As(err, &le) || le.Code != 1 || Message(err) != "bad XML" || err.Error() != "define domain: virError(Code=1, Domain=10, Message='bad XML')" {
		t.Fatalf("define error %q (%T), want the libvirt error kept", err, err)
	}
	err = c.Destroy(ctx, "nosuch")
	var nr *NotRunningError
	if !errors.As(err, &nr) || nr.Name != "nosuch" || err.Error() != "Domain is powered off: 'nosuch'" {
		t.Fatalf("Destroy of a halted domain: %v (%T)", err, err)
	}
	if err := c.AttachDevice(ctx, "work", "<disk/>"); err == nil || err.Error() != "attach refused: <disk/>" {
		t.Fatalf("AttachDevice: %v", err)
	}
	if x, err := c.XMLDesc(ctx, "work"); err != nil || !strings.Contains(x, "<name>work</name>") {
		t.Fatalf("XMLDesc = %q %v", x, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.States(ctx); err == nil {
		t.Fatal("States after Close succeeded")
	}
}

func TestHelperOpenErrors(t *testing.T) {
	_, err := openHelper(t, "fake:///locked")
	var lt *LockTimeoutError
	if !errors.As(err, &lt) || lt.Holder != 42 || !strings.Contains(err.Error(), "process 42 holds it") {
		t.Fatalf("locked: %v (%T), want LockTimeoutError", err, err)
	}
	_, err = openHelper(t, "fake:///bad")
	if Message(err) != "no driver" || !strings.HasPrefix(err.Error(), "connect to fake:///bad: ") {
		t.Fatalf("bad URI: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "qvm-virt")
	_, err = Open(context.Background(), Config{URI: "fake:///ok", Helper: missing})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing helper: %v, want one line naming %s", err, missing)
	}
}

// A cancelled request stops the helper at once; the connection is gone.
func TestHelperCancel(t *testing.T) {
	c, err := openHelper(t, "fake:///ok")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = c.State(ctx, "slow")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 10*time.Second {
		t.Fatalf("slow request: %v after %v, want the deadline at once", err, time.Since(t0))
	}
	if _, err := c.States(context.Background()); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("after cancel: %v, want the helper stopped", err)
	}
}

// A helper that dies answers with an error naming it, not a hang.
func TestHelperCrash(t *testing.T) {
	c, err := openHelper(t, "fake:///ok")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.State(context.Background(), "crash")
	if err == nil || !strings.Contains(err.Error(), "hypervisor helper") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("crash: %v", err)
	}
}

func TestWireErrorText(t *testing.T) {
	for _, err := range []error{
		errors.New("plain"),
		&NotRunningError{Name: "a"},
		fmt.Errorf("kill a: %w", &Error{Code: 55, Message: "m"}),
		fmt.Errorf("wait: %w", context.Canceled),
	} {
		got := EncodeError(err).Err()
		if got.Error() != err.Error() {
			t.Errorf("%q came back as %q", err, got)
		}
	}
	if !errors.Is(EncodeError(fmt.Errorf("x: %w", context.Canceled)).Err(), context.Canceled) {
		t.Error("context.Canceled lost")
	}
}

// A qvm that exits without closing takes its helper with it (the pipe
// ends), so the embedded driver and its lock never outlive the command.
func TestHelperEndsWithQvm(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VIRT_TEST_OPEN_AND_EXIT=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		t.Fatalf("helper pid %q", out)
	}
	for i := 0; i < 500; i++ {
		if err := syscall.Kill(pid, 0); err != nil {
			return
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			return // exited; its parent, gone, left it to init
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("helper %d still runs 5 s after its qvm exited", pid)
}

// With the embedded driver qvm holds the lock beside the root itself;
// Release ends the helper (the driver) but not the lock, and the next
// call starts a new helper under it.
func TestHelperReleaseKeepsLock(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "libvirt")
	c, err := Open(ctx, Config{URI: "qemu:///embed?root=" + root, Helper: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	locked := func(what string) {
		t.Helper()
		if !LockedBy(root, os.Getpid()) || LockedBy(root, os.Getppid()) {
			t.Fatalf("%s: LockedBy(this process) false, or true for its parent", what)
		}
		if fl, err := LockRoot(ctx, root, 30*time.Millisecond); err == nil {
			fl.Unlock()
			t.Fatalf("%s: the root's lock is free", what)
		}
	}
	pid1, err := c.State(ctx, "pid")
	if err != nil {
		t.Fatal(err)
	}
	locked("connected")
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	locked("released")
	if n, _ := strconv.Atoi(string(pid1)); syscall.Kill(n, 0) == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n)); !strings.Contains(string(b), ") Z ") {
			t.Fatalf("helper %s still runs after Release", pid1)
		}
	}
	pid2, err := c.State(ctx, "pid")
	if err != nil || pid2 == pid1 {
		t.Fatalf("after Release: pid %q %v, want a new helper (was %s)", pid2, err, pid1)
	}
	locked("again")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if LockedBy(root, os.Getpid()) {
		t.Fatal("LockedBy(this process) after Close")
	}
	fl, err := LockRoot(ctx, root, 30*time.Millisecond)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	fl.Unlock()
	if _, err := c.States(ctx); err == nil {
		t.Fatal("a call after Close started a helper")
	}
}

// Requests from several goroutines take turns on the one pipe.
func TestHelperConcurrentCalls(t *testing.T) {
	c, err := openHelper(t, "fake:///ok")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			for j := 0; j < 20; j++ {
				if st, err := c.States(context.Background()); err != nil || st["work"] != Running {
					errs <- fmt.Errorf("States = %v %v", st, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
