package commands

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/storage"
)

// realQubes is one integration run: a state directory on a loop-mounted
// btrfs (reflink copies), the embedded libvirt QEMU driver with TCG and
// the test guest kernel of `make test-kernel`.
type realQubes struct {
	t       *testing.T
	state   string
	run     string
	kernel  string // kernel version in the linux-kernel pool
	qmemman string
	extra   []string
	// consoleMark: size of a qube's console.log at its last qvm start.
	consoleMark map[string]int
}

// needIntegration skips, naming what is missing, where the embedded QEMU
// driver cannot run a guest.
func needIntegration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no real guests")
	}
	if os.Geteuid() != 0 {
		t.Skip("the embedded QEMU driver (system mode) and loop mounts need root")
	}
	for _, p := range []struct{ file, pkg string }{
		{"/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so", "libvirt-daemon-driver-qemu"},
		{"/usr/bin/qemu-system-x86_64", "qemu-system-x86"},
		{"/bin/busybox", "busybox-static"},
		{"/usr/bin/cpio", "cpio"},
		{"/usr/sbin/mkfs.btrfs", "btrfs-progs"},
	} {
		if _, err := os.Stat(p.file); err != nil {
			t.Skipf("%s is missing (package %s, see deps/start.deb)", p.file, p.pkg)
		}
	}
	if _, err := exec.Command("getent", "passwd", "libvirt-qemu").Output(); err != nil {
		t.Skip("system user libvirt-qemu is missing (the QEMU driver needs it; make deps creates it)")
	}
}

// testKernel builds (once; cached under bin/) the test guest with the
// make target and returns its directory and version.
func testKernel(t *testing.T) (string, string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "bin", "test-kernel")
	cmd := exec.Command("make", "--no-print-directory", "-s", "-C", root, "test-kernel", "KERNEL_DIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Skipf("make test-kernel failed (Debian cloud kernel package not downloadable here?): %v: %s", err, stderr)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Fatalf("make test-kernel printed no version")
	}
	return dir, lines[len(lines)-1]
}

func loopBtrfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(2 << 30)
	f.Close()
	if out, err := exec.Command("mkfs.btrfs", "-q", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.btrfs: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a loop btrfs (loop devices or btrfs missing): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

func newRealQubes(t *testing.T) *realQubes {
	needIntegration(t)
	kdir, version := testKernel(t)
	mnt := loopBtrfs(t)
	r := &realQubes{t: t, state: filepath.Join(mnt, "state"), run: filepath.Join(t.TempDir(), "run"), kernel: version,
		qmemman: filepath.Join(t.TempDir(), "qmemman.sock"), consoleMark: map[string]int{}}
	r.ok("init")
	// The linux-kernel pool lives in STATE/vm-kernels.
	dst := filepath.Join(r.state, "vm-kernels", version)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "initramfs", "default-kernelopts-common.txt", "default-kernelopts-nopci.txt"} {
		b, err := os.ReadFile(filepath.Join(kdir, version, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(r.killAll)
	return r
}

func (r *realQubes) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "QVM_TEST_AS_QVM=1", "QVM_STATE_DIR="+r.state, "QVM_CONFIG=/nonexistent",
		"QVM_RUN_DIR="+r.run, "QVM_QMEMMAN_SOCKET="+r.qmemman,
		"QVM_LIBVIRT_URI=qemu:///embed?root="+filepath.Join(r.state, "libvirt"), "QVM_QEMU_DOMAIN_TYPE=qemu")
	cmd.Env = append(cmd.Env, r.extra...)
	return cmd
}

// qvm runs one qvm process and returns stdout, stderr and the exit code.
func (r *realQubes) qvm(args ...string) (string, string, int) {
	r.t.Helper()
	if len(args) > 1 && args[0] == "start" {
		for _, n := range args[1:] {
			if st, err := os.Stat(filepath.Join(r.vmDir("", n), "console.log")); err == nil {
				r.consoleMark[n] = int(st.Size())
			}
		}
	}
	var out, errb bytes.Buffer
	cmd := r.cmd(args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("qvm %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (r *realQubes) ok(args ...string) string {
	r.t.Helper()
	out, errs, code := r.qvm(args...)
	if code != 0 {
		r.t.Fatalf("qvm %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs qvm expecting exit code want and a stderr containing msg.
func (r *realQubes) fails(want int, msg string, args ...string) {
	r.t.Helper()
	out, errs, code := r.qvm(args...)
	if code != want || !strings.Contains(errs, msg) {
		r.t.Fatalf("qvm %s: exit %d, stderr %q; want exit %d and %q\n%s", strings.Join(args, " "), code, errs, want, msg, out)
	}
}

// state is the STATE column of qvm ls for a qube (from a new process).
func (r *realQubes) power(name string) string {
	r.t.Helper()
	out := r.ok("ls", "--raw-data", "-O", "name,state")
	for _, line := range strings.Split(out, "\n") {
		if n, st, ok := strings.Cut(line, "|"); ok && n == name {
			return st
		}
	}
	return "(not listed)"
}

func (r *realQubes) expectPower(name, want string) {
	r.t.Helper()
	if got := r.power(name); got != want {
		r.t.Fatalf("%s is %s, want %s", name, got, want)
	}
}

// create makes a qube with qvm create and makes sure its volumes exist.
func (r *realQubes) create(args ...string) {
	r.t.Helper()
	r.ok(append([]string{"create"}, args...)...)
	name := args[len(args)-1]
	st := &store.Store{Dir: r.state, LockTimeout: 10 * time.Second}
	// qvm create of this branch records the qube; its volumes are made by
	// the storage package (as qvm create does once storage is wired in).
	err := st.Update(context.Background(), func(app *core.App) error {
		d, err := app.Domain(name)
		if err != nil {
			return err
		}
		if _, err := os.Stat(app.VMDir(d)); err == nil {
			return nil
		}
		return storage.Open(app, storage.Options{RunDir: r.run}).Create(context.Background(), d)
	})
	if err != nil {
		r.t.Fatalf("volumes of %s: %v", name, err)
	}
}

func (r *realQubes) vmDir(class, name string) string {
	if class == "TemplateVM" {
		return filepath.Join(r.state, "vm-templates", name)
	}
	return filepath.Join(r.state, "appvms", name)
}

// waitConsole waits for the guest's "up" line in its serial log (the log
// is appended to at every boot: only the part after the last start counts).
func (r *realQubes) waitConsole(name string) string {
	r.t.Helper()
	path := filepath.Join(r.vmDir("", name), "console.log")
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > r.consoleMark[name] && bytes.Contains(b[r.consoleMark[name]:], []byte("qvm-test-guest: up")) {
			return string(b[r.consoleMark[name]:])
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	r.t.Fatalf("no console line from %s after 90s; console.log:\n%s", name, b)
	return ""
}

// markers lists the volume-running markers (storage started).
func (r *realQubes) markers() []string {
	m, _ := filepath.Glob(filepath.Join(r.run, "volume-running-*"))
	return m
}

func (r *realQubes) noneRunning() {
	r.t.Helper()
	out := r.ok("ls", "--raw-data", "-O", "name,state")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if n, st, _ := strings.Cut(line, "|"); n != "dom0" && st != "Halted" {
			r.t.Errorf("%s is %s, want Halted", n, st)
		}
	}
	if m := r.markers(); len(m) > 0 {
		r.t.Errorf("storage still started: %v", m)
	}
}

func (r *realQubes) killAll() {
	out, _, _ := r.qvm("kill", "--all")
	_ = out
}

// The whole life of real qubes on the embedded driver: start, seen from
// another process, console, pause/unpause, ACPI shutdown committing the
// private volume, kill, and a disposable that removes itself.
func TestIntegrationRealQubes(t *testing.T) {
	r := newRealQubes(t)
	r.create("--standalone", "-l", "red", "--prop", "kernel="+r.kernel, "--prop", "memory=192", "--prop", "netvm=", "work")

	_, errs, code := r.qvm("start", "work")
	if code != 0 {
		t.Fatalf("qvm start work: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "qmemmand is not running") || strings.Count(errs, "qmemmand is not running") != 1 {
		t.Errorf("start without qmemmand should say so once: %q", errs)
	}
	r.expectPower("work", "Running") // a second process sees it
	console := r.waitConsole("work")
	if !strings.Contains(console, "disk=/dev/vdb") {
		t.Errorf("guest did not find its private disk: %s", console)
	}
	r.fails(1, "Starting qube failed: work: Domain is already running", "start", "work")
	r.fails(1, "Domain is not powered off: work", "remove", "-f", "work")
	r.ok("start", "--skip-if-running", "work")

	r.ok("pause", "work")
	r.expectPower("work", "Paused")
	r.fails(1, "Domain not running (either powered off or paused): 'work'", "shutdown", "work")
	r.ok("unpause", "work")
	r.expectPower("work", "Running")

	r.ok("shutdown", "--wait", "work")
	r.expectPower("work", "Halted")
	priv := filepath.Join(r.vmDir("", "work"), "private.img")
	head := make([]byte, 64)
	f, err := os.Open(priv)
	if err != nil {
		t.Fatal(err)
	}
	f.Read(head)
	f.Close()
	if !bytes.HasPrefix(head, []byte("QVM-TEST-GUEST boot=")) {
		t.Errorf("committed private.img does not start with the guest's marker: %q", head)
	}
	revs, _ := filepath.Glob(priv + ".*@*Z")
	if len(revs) != 1 {
		t.Errorf("revisions of private.img: %v, want the previous image", revs)
	} else if b, _ := os.ReadFile(revs[0]); bytes.Contains(b[:64], []byte("QVM-TEST-GUEST")) {
		t.Errorf("revision %s already has the marker; it should be the image before the boot", revs[0])
	}
	if _, err := os.Stat(filepath.Join(r.vmDir("", "work"), "private-dirty.img")); err == nil {
		t.Errorf("private-dirty.img left after shutdown --wait")
	}
	r.noneRunning()
	r.ok("shutdown", "work") // halted: nothing to do, exit 0

	// A guest that ignores the power button: --wait times out after
	// shutdown_timeout, retries once, then kills (exit 0: it is halted).
	r.ok("prefs", "work", "kernelopts", "qvmtest.ignore-acpi")
	r.ok("prefs", "work", "shutdown_timeout", "1")
	r.ok("start", "work")
	if c := r.waitConsole("work"); !strings.Contains(c, "ignoring the power button") {
		t.Errorf("guest did not see qvmtest.ignore-acpi: %s", c)
	}
	// Meanwhile another qvm waits for the embedded root instead of failing.
	var shOut, shErr bytes.Buffer
	sh := r.cmd("shutdown", "--wait", "work")
	sh.Stdout, sh.Stderr = &shOut, &shErr
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	lsOut, lsErr, lsCode := r.qvm("ls", "--raw-data", "-O", "name,state")
	err = sh.Wait()
	if err != nil || !strings.Contains(shErr.String(), "Error: Retrying shutdown of qubes that timed out: work") ||
		!strings.Contains(shErr.String(), "Error: Killing timed out qubes: work") {
		t.Errorf("shutdown --wait of a guest ignoring ACPI: %v, %q", err, shErr.String())
	}
	if lsCode != 0 || !strings.Contains(lsOut, "work|Halted") {
		t.Errorf("qvm ls during the shutdown: exit %d, %q %q (want it to wait, then see work halted)", lsCode, lsOut, lsErr)
	}
	r.noneRunning()
	r.ok("prefs", "-D", "work", "kernelopts")

	// kill: at once, storage stopped by the same command.
	r.ok("start", "work")
	r.ok("kill", "work")
	r.noneRunning()
	r.ok("kill", "work")

	// --cdrom with a dom0 file: a read-only loop device as a SATA CD-ROM.
	iso := filepath.Join(t.TempDir(), "tools.iso")
	if err := os.WriteFile(iso, bytes.Repeat([]byte("ISO"), 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	r.ok("start", "--cdrom", "dom0:"+iso, "work")
	loops, _ := exec.Command("losetup", "-j", iso).Output()
	loop, _, _ := strings.Cut(string(loops), ":")
	if !strings.HasPrefix(loop, "/dev/loop") {
		t.Fatalf("no loop device for %s: %q", iso, loops)
	}
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	x, err := virshDumpXML("qemu:///embed?root="+filepath.Join(r.state, "libvirt"), "work")
	if err != nil || !strings.Contains(x, `device="cdrom"`) && !strings.Contains(x, `device='cdrom'`) || !strings.Contains(x, loop) {
		t.Errorf("live XML lacks the CD-ROM %s: %v\n%s", loop, err, x)
	}
	r.ok("kill", "work")
	r.noneRunning()
	if out, _ := exec.Command("losetup", "-j", iso).Output(); len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("loop device of the CD-ROM not freed at the stop: %s", out)
	}

	// Disposable: created, started, printed; removed after it halts.
	r.create("-C", "TemplateVM", "-l", "black", "--prop", "kernel="+r.kernel, "--prop", "memory=192", "--prop", "netvm=", "tpl")
	r.create("-l", "red", "-t", "tpl", "--prop", "template_for_dispvms=True", "dvm")
	out := r.ok("start", "--dispvm", "dvm")
	disp := strings.TrimSpace(out)
	if !strings.HasPrefix(disp, "disp") {
		t.Fatalf("qvm start --dispvm printed %q, want the new name", out)
	}
	r.expectPower(disp, "Running")
	r.waitConsole(disp)
	r.ok("shutdown", "--wait", disp)
	if got := r.power(disp); got != "(not listed)" {
		t.Errorf("disposable %s after shutdown: %s, want removed", disp, got)
	}
	if _, err := os.Stat(r.vmDir("", disp)); err == nil {
		t.Errorf("disposable's directory still exists")
	}
	// A named disposable (qvm create --class DispVM) has no auto_cleanup:
	// it stays after it halts.
	r.ok("create", "--class", "DispVM", "-t", "dvm", "-l", "red", "named")
	r.ok("start", "named")
	r.waitConsole("named")
	r.ok("shutdown", "--wait", "named")
	r.expectPower("named", "Halted")

	// Lazy cleanup: a disposable that halts by itself (kill from outside
	// qvm would do the same) disappears at the next command.
	out = r.ok("start", "--dispvm", "dvm")
	disp = strings.TrimSpace(out)
	r.waitConsole(disp)
	// virsh (libvirt-clients) on the same root; it may report an error
	// although QEMU is gone (the embedded driver races its own reconnect).
	if out, err := exec.Command("virsh", "-q", "-c", "qemu:///embed?root="+filepath.Join(r.state, "libvirt"), "destroy", disp).CombinedOutput(); err != nil {
		t.Logf("virsh destroy %s: %v: %s", disp, err, bytes.TrimSpace(out))
	}
	if got := r.power(disp); got != "(not listed)" {
		t.Errorf("disposable %s halted outside qvm: %s at the next command, want removed", disp, got)
	}
	r.noneRunning()
}

// fakeQmemmand answers every request with reply and records them.
func fakeQmemmand(t *testing.T, path, reply string) chan string {
	return fakeQmemmandAt(t, path, reply, nil)
}

// fakeQmemmandAt is fakeQmemmand calling atRequest as each request comes.
func fakeQmemmandAt(t *testing.T, path, reply string, atRequest func()) chan string {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			if atRequest != nil {
				atRequest()
			}
			got <- strings.TrimSpace(line)
			c.Write([]byte(reply + "\n"))
			// The client keeps the connection while it creates the domain.
			go func() { b := make([]byte, 1); c.Read(b); c.Close() }()
		}
	}()
	return got
}

// Failure paths: each a clear message and nothing left running or started.
func TestIntegrationStartFailures(t *testing.T) {
	r := newRealQubes(t)
	k := "kernel=" + r.kernel
	defer func() { r.t = t }()

	t.Run("missing kernel", func(t *testing.T) {
		r.t = t
		broken := filepath.Join(r.state, "vm-kernels", "gone")
		os.MkdirAll(broken, 0o755)
		os.WriteFile(filepath.Join(broken, "vmlinuz"), []byte("x"), 0o644)
		r.create("--standalone", "-l", "red", "--prop", "kernel=gone", "--prop", "netvm=", "nokernel")
		os.Remove(filepath.Join(broken, "vmlinuz"))
		r.fails(1, "Starting qube failed: nokernel: ", "start", "nokernel")
		_, errs, _ := r.qvm("start", "nokernel")
		if !strings.Contains(errs, "vmlinuz") {
			t.Errorf("message should name the missing vmlinuz: %q", errs)
		}
		r.noneRunning()
	})

	t.Run("missing template volume", func(t *testing.T) {
		r.t = t
		r.create("-C", "TemplateVM", "-l", "black", "--prop", k, "--prop", "netvm=", "tpl")
		r.create("-l", "red", "-t", "tpl", "--prop", "netvm=", "app")
		os.Remove(filepath.Join(r.vmDir("TemplateVM", "tpl"), "root.img"))
		r.fails(1, "root.img", "start", "app")
		r.noneRunning()
		if _, err := os.Stat(filepath.Join(r.vmDir("", "app"), "private-dirty.img")); err == nil {
			t.Errorf("app's storage was started")
		}
	})

	t.Run("netvm fails to start", func(t *testing.T) {
		r.t = t
		// libvirt refuses 4096 vCPUs: the netvm fails after its storage
		// started, which is undone; the client is never started.
		r.create("--standalone", "-l", "red", "--prop", k, "--prop", "provides_network=True", "--prop", "netvm=", "--prop", "vcpus=4096", "net")
		r.create("--standalone", "-l", "red", "--prop", k, "--prop", "netvm=net", "client")
		_, errs, code := r.qvm("start", "client")
		if code != 1 || !strings.Contains(errs, "Starting qube failed: client: netvm net: Start failed: ") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		r.noneRunning()
		if _, err := os.Stat(filepath.Join(r.vmDir("", "net"), "private-dirty.img")); err == nil {
			t.Errorf("net's storage start was not undone")
		}
	})

	t.Run("qmemmand OK", func(t *testing.T) {
		r.t = t
		r.create("--standalone", "-l", "red", "--prop", k, "--prop", "memory=192", "--prop", "netvm=", "small")
		sock := r.qmemman
		r.qmemman = filepath.Join(t.TempDir(), "ok.sock")
		defer func() { r.qmemman = sock }()
		// While qvm start waits for qmemmand it holds the lock beside the
		// embedded root but not the driver, so qmemmand can balloon.
		root := filepath.Join(r.state, "libvirt")
		driver, lock := -1, false
		got := fakeQmemmandAt(t, r.qmemman, "OK", func() { driver, lock = virt.DriverHolder(root), virt.LockBusy(root) })
		_, errs, code := r.qvm("start", "small")
		if code != 0 || strings.Contains(errs, "qmemmand") {
			t.Fatalf("start with qmemmand answering OK: exit %d, %q", code, errs)
		}
		if req := <-got; req != "210239488" {
			t.Errorf("memory request %q", req)
		}
		if driver != 0 || !lock {
			t.Errorf("at the memory request: driver held by %d, lock held %v; want the lock only", driver, lock)
		}
		r.expectPower("small", "Running")
		r.ok("kill", "small")
	})

	t.Run("qmemmand FAIL", func(t *testing.T) {
		r.t = t
		r.create("--standalone", "-l", "red", "--prop", k, "--prop", "memory=192", "--prop", "netvm=", "big")
		got := fakeQmemmand(t, r.qmemman, "FAIL")
		r.fails(1, "Starting qube failed: big: Not enough memory to start domain 'big'", "start", "big")
		select {
		case req := <-got:
			if req != "210239488" { // (192 + 4 + 2×1.5) MiB + 192×8192 (pvh, maxmem 0)
				t.Errorf("memory request %q, want 210239488", req)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("qmemmand got no request")
		}
		r.noneRunning()
	})
}
