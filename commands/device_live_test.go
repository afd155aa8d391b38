package commands

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core/virt"
)

// liveKernel gives the test guest kernel dir (QVM_TEST_KERNEL_DIR, else
// scripts/test-kernel.sh into a cache under the temp dir) and its version.
func liveKernel(t *testing.T) (dir, version string) {
	t.Helper()
	dir = os.Getenv("QVM_TEST_KERNEL_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "qvm-test-kernel")
	}
	out, err := exec.Command("../scripts/test-kernel.sh", dir).CombinedOutput()
	if err != nil {
		t.Skipf("no test guest kernel (scripts/test-kernel.sh: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return dir, lines[len(lines)-1]
}

// A block device attached to a running TCG guest on the embedded libvirt
// driver shows in the domain's live XML and in qvm-block list, and leaves
// both when detached; a file given by path goes through a loop device.
func TestDeviceLiveAttachDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mount, the embedded QEMU driver)")
	}
	for _, p := range []string{"qemu-system-x86_64", "mkfs.xfs", "losetup", "virsh"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is missing", p)
		}
	}
	kdir, kver := liveKernel(t)
	base := t.TempDir()
	// file-reflink needs a reflink filesystem: xfs on a loop device
	img := filepath.Join(base, "fs.img")
	mnt := filepath.Join(base, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	must(t, os.WriteFile(img, nil, 0o644))
	must(t, os.Truncate(img, 1<<30))
	if out, err := exec.Command("mkfs.xfs", "-q", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.xfs: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount xfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	state := filepath.Join(mnt, "state")
	t.Setenv("QVM_RUN_DIR", filepath.Join(base, "run"))
	t.Setenv("QVM_QEMU_DOMAIN_TYPE", "qemu")
	t.Setenv("QVM_SYSFS_ROOT", "/sys")
	t.Setenv("QVM_LIBVIRT_URI", "")
	q := func(args ...string) string { t.Helper(); return runQvm(t, state, args...) }

	q("init", "--reflink", "yes")
	must(t, os.MkdirAll(filepath.Join(state, "vm-kernels"), 0o755))
	if out, err := exec.Command("cp", "-r", filepath.Join(kdir, kver), filepath.Join(state, "vm-kernels")).CombinedOutput(); err != nil {
		t.Fatalf("cp kernel: %v %s", err, out)
	}
	q("create", "-C", "TemplateVM", "-l", "black", "tpl")
	q("create", "-C", "AppVM", "-t", "tpl", "-l", "red", "work")
	q("prefs", "work", "kernel", kver)
	q("prefs", "work", "memory", "256")
	q("prefs", "work", "netvm", "")
	q("start", "work")
	t.Cleanup(func() { _, _ = qvmProc(state, "kill", "work").CombinedOutput() })

	file := filepath.Join(base, "disk.img")
	must(t, os.WriteFile(file, nil, 0o644))
	must(t, os.Truncate(file, 8<<20))
	t.Cleanup(func() {
		out, _ := exec.Command("losetup", "-j", file).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if dev, _, ok := strings.Cut(l, ":"); ok {
				_ = exec.Command("losetup", "-d", dev).Run()
			}
		}
	})
	q("device", "block", "attach", "--ro", "work", "dom0:"+file)
	out, err := exec.Command("losetup", "-j", file).Output()
	must(t, err)
	loop := filepath.Base(strings.TrimSpace(strings.SplitN(string(out), ":", 2)[0]))
	if !strings.HasPrefix(loop, "loop") {
		t.Fatalf("no loop device for %s: %q", file, out)
	}

	// The live XML comes from virsh in its own process: an embedded driver
	// opened in this process would keep the root busy for the next qvm.
	live := func() string {
		t.Helper()
		out, err := virshDumpXML(virt.EmbedURI(state), "work")
		if err != nil {
			t.Fatalf("virsh dumpxml: %v: %s", err, out)
		}
		return out
	}
	reDisk := regexp.MustCompile(`(?s)<disk type=.block. device=.disk.>.*?</disk>`)
	disk := reDisk.FindString(live())
	for _, want := range []string{"/dev/" + loop, `<target dev="xvdi" bus="usb"/>`, "<readonly/>"} {
		if !strings.Contains(strings.ReplaceAll(disk, "'", `"`), want) {
			t.Fatalf("live XML disk lacks %s:\n%s", want, disk)
		}
	}
	if got := q("device", "block", "list"); !regexp.MustCompile(`(?m)^dom0:` + loop + ` .*  work \(attached\)$`).MatchString(got) {
		t.Fatalf("list does not show the attachment:\n%s", got)
	}
	// attached already: refused; the frontend name comes back on detach
	if out, err := qvmProc(state, "device", "block", "attach", "work", "dom0:"+loop).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "Error: device dom0:"+loop+" of class block already attached to work") {
		t.Fatalf("second attach: %v %s", err, out)
	}
	q("device", "block", "detach", "work", "dom0:"+loop)
	deadline := time.Now().Add(10 * time.Second)
	for reDisk.MatchString(live()) {
		if time.Now().After(deadline) {
			t.Fatalf("disk still in the live XML after detach:\n%s", live())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := q("device", "block", "list"); strings.Contains(got, "(attached)") {
		t.Fatalf("list still shows an attachment:\n%s", got)
	}

	// refusals that need a running qube, as a user sees them
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "read-only=no", "work", "dom0:" + loop}, "Error: This device can be attached only read-only"},
		{[]string{"-o", "devtype=tape", "work", "dom0:" + loop}, "Error: devtype option can only have 'disk' or 'cdrom' value"},
		{[]string{"-o", "frontend-dev=hdb", "work", "dom0:" + loop}, "Error: frontend-dev option must start with 'xvd' or 'sd'"},
	} {
		out, err := qvmProc(state, append([]string{"device", "block", "attach"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("attach %v: %v %s, want %q", c.args, err, out, c.want)
		}
	}
	q("prefs", "work", "devices_denied", "b******")
	if out, err := qvmProc(state, "device", "block", "attach", "work", "dom0:"+loop).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "Error: Device exposes a banned interface: b******") {
		t.Errorf("denied interface: %v %s", err, out)
	}
	q("prefs", "-D", "work", "devices_denied")
	if reDisk.MatchString(live()) {
		t.Fatal("a refused attach left a disk in the live XML")
	}

	// At start: a required device is in the config from boot, an
	// auto-attach one is attached right after; a missing required one
	// stops the start.
	file2 := filepath.Join(base, "disk2.img")
	must(t, os.WriteFile(file2, nil, 0o644))
	must(t, os.Truncate(file2, 4<<20))
	out, err = exec.Command("losetup", "-f", "--show", file2).Output()
	must(t, err)
	loop2 := filepath.Base(strings.TrimSpace(string(out)))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", "/dev/"+loop2).Run() })
	// assigned while the qube runs: the hint names the attach command
	if got := q("device", "block", "assign", "--required", "-o", "read-only=yes", "work", "dom0:"+loop); !strings.Contains(got,
		"Assigned. To attach you can now restart domain or run: \n\tqvm-block attach -o read-only=yes work dom0:"+loop+"\n") {
		t.Fatalf("assign hint: %q", got)
	}
	q("device", "block", "assign", "work", "dom0:"+loop2)
	q("kill", "work")
	q("start", "work")
	x := strings.ReplaceAll(live(), "'", `"`)
	for _, want := range []string{`<source dev="/dev/` + loop + `"`, `<source dev="/dev/` + loop2 + `"`} {
		if !strings.Contains(x, want) {
			t.Fatalf("after start the live XML lacks %s:\n%s", want, x)
		}
	}
	got := q("device", "block", "list", "-s")
	for _, re := range []string{`(?m)^dom0:` + loop + ` .*  work \(attached\), \*work \(required: read-only=yes\)$`,
		`(?m)^dom0:` + loop2 + ` .*  work \(attached\), \*work \(auto-attach\)$`} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Fatalf("list -s does not match %s:\n%s", re, got)
		}
	}
	if out, err := qvmProc(state, "device", "block", "detach", "work", "dom0:"+loop).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "Can not detach a required device from a non halted qube. You need to unassign device first.") {
		t.Fatalf("detach of a required device: %v %s", err, out)
	}
	if got := q("device", "block", "unassign", "work", "dom0:"+loop2); got != "Unassigned. To detach you can now restart domain or run: \n\tqvm-block detach work dom0:"+loop2+"\n" {
		t.Fatalf("unassign hint: %q", got)
	}
	q("kill", "work")
	q("device", "block", "unassign", "work")
	q("device", "block", "assign", "--required", "work", "dom0:nosuch0:some-id")
	if out, err := qvmProc(state, "start", "work").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "Block device dom0:nosuch0:some-id not available") {
		t.Fatalf("start with a missing required device: %v %s", err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// virshDumpXML is a domain's live XML from `virsh dumpxml` in its own
// process. virsh 9 on the embedded driver sometimes segfaults while tearing
// the driver down, after it printed the whole document; that document is
// still the live state, so only a cut one is an error.
func virshDumpXML(uri, name string) (string, error) {
	out, err := exec.Command("virsh", "-c", uri, "dumpxml", name).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGSEGV &&
		strings.HasSuffix(strings.TrimSpace(string(out)), "</domain>") {
		err = nil
	}
	return string(out), err
}
