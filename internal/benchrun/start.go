package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/store"
	"github.com/qvm-dev/qvm/storage"
)

// benchStart times real qubes on the embedded libvirt QEMU driver with TCG
// (the test kernel of `make test-kernel`): qvm start until the domain runs,
// the guest's boot until its console line, qvm shutdown --wait (ACPI, guest
// halt, storage commit), and a bare `virsh start` of the same domain XML.
func benchStart(r *runner) (string, error) {
	skip := func(why string) (string, error) {
		return fmt.Sprintf("Not measured here: %s.\n", why), nil
	}
	if os.Geteuid() != 0 {
		return skip("needs root (embedded QEMU driver, loop mount)")
	}
	for _, p := range []struct{ file, pkg string }{
		{"/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so", "libvirt-daemon-driver-qemu"},
		{"/usr/bin/qemu-system-x86_64", "qemu-system-x86"},
		{"/usr/bin/virsh", "libvirt-clients"},
		{"/usr/sbin/mkfs.btrfs", "btrfs-progs"},
	} {
		if _, err := os.Stat(p.file); err != nil {
			return skip(p.file + " is missing (package " + p.pkg + ")")
		}
	}
	kroot, _ := filepath.Abs(filepath.Join("bin", "test-kernel"))
	out, err := exec.Command("make", "--no-print-directory", "-s", "test-kernel", "KERNEL_DIR="+kroot).Output()
	if err != nil {
		return skip("make test-kernel failed: " + err.Error())
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return skip("make test-kernel printed no version")
	}
	version := f[len(f)-1]

	// A loop-mounted btrfs: reflink copies, as on a Qubes file-reflink pool.
	img := filepath.Join(r.tmp, "start-fs.img")
	mnt := filepath.Join(r.tmp, "start-mnt")
	os.MkdirAll(mnt, 0o755)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return "", err
	}
	os.Truncate(img, 2<<30)
	if o, err := exec.Command("mkfs.btrfs", "-q", img).CombinedOutput(); err != nil {
		return skip("mkfs.btrfs: " + strings.TrimSpace(string(o)))
	}
	if o, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		return skip("loop mount: " + strings.TrimSpace(string(o)))
	}
	defer exec.Command("umount", mnt).Run()

	state := filepath.Join(mnt, "state")
	run := filepath.Join(r.tmp, "start-run")
	uri := "qemu:///embed?root=" + filepath.Join(state, "libvirt")
	env := append(os.Environ(), "QVM_STATE_DIR="+state, "QVM_CONFIG=/nonexistent", "QVM_RUN_DIR="+run,
		"QVM_LIBVIRT_URI="+uri, "QVM_QEMU_DOMAIN_TYPE=qemu", "QVM_QMEMMAN_SOCKET="+filepath.Join(r.tmp, "no-qmemman.sock"))
	qvm := func(args ...string) (time.Duration, error) {
		cmd := exec.Command(r.qvm, args...)
		cmd.Env = env
		t0 := time.Now()
		o, err := cmd.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("qvm %s: %v: %s", strings.Join(args, " "), err, o)
		}
		return time.Since(t0), nil
	}
	virsh := func(args ...string) (time.Duration, []byte, error) {
		cmd := exec.Command("virsh", append([]string{"-q", "-c", uri}, args...)...)
		t0 := time.Now()
		o, err := cmd.CombinedOutput()
		if err != nil {
			return 0, o, fmt.Errorf("virsh %s: %v: %s", strings.Join(args, " "), err, o)
		}
		return time.Since(t0), o, nil
	}
	if _, err := qvm("init", "--reflink", "yes"); err != nil {
		return "", err
	}
	kdst := filepath.Join(state, "vm-kernels", version)
	os.MkdirAll(kdst, 0o755)
	for _, name := range []string{"vmlinuz", "initramfs", "default-kernelopts-common.txt", "default-kernelopts-nopci.txt"} {
		b, err := os.ReadFile(filepath.Join(kroot, version, name))
		if err != nil {
			return "", err
		}
		os.WriteFile(filepath.Join(kdst, name), b, 0o644)
	}
	if _, err := qvm("create", "--standalone", "-l", "red", "--prop", "kernel="+version, "--prop", "memory=192", "--prop", "netvm=", "bench"); err != nil {
		return "", err
	}
	// Volumes: made by the storage package where qvm create does not yet.
	st := &store.Store{Dir: state, LockTimeout: 10 * time.Second}
	if err := st.Update(context.Background(), func(app *core.App) error {
		d, err := app.Domain("bench")
		if err != nil {
			return err
		}
		if _, err := os.Stat(app.VMDir(d)); err == nil {
			return nil
		}
		return storage.Open(app, storage.Options{RunDir: run}).Create(context.Background(), d)
	}); err != nil {
		return "", err
	}
	console := filepath.Join(state, "appvms", "bench", "console.log")
	// waitUp waits for the console line; it also returns the guest's own
	// uptime at that line (its kernel and init, without the host's part).
	waitUp := func(path string, from time.Time) (time.Duration, time.Duration, error) {
		for time.Since(from) < 90*time.Second {
			if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte("qvm-test-guest: up")) {
				el := time.Since(from)
				var up float64
				if i := bytes.Index(b, []byte("uptime=")); i >= 0 {
					fmt.Sscan(string(b[i+len("uptime="):]), &up)
				}
				return el, time.Duration(up * float64(time.Second)), nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return 0, 0, fmt.Errorf("no console line in %s", path)
	}

	const reps = 5
	var tStart, tBoot, tShut, tGuest []time.Duration
	var tVirsh, tVirshBoot, tVirshGuest []time.Duration
	var tLs, tVirshList []time.Duration
	var xml []byte
	qvmCycle := func(record bool) error {
		os.Remove(console)
		t0 := time.Now()
		d, err := qvm("start", "bench")
		if err != nil {
			return err
		}
		up, guest, err := waitUp(console, t0)
		if err != nil {
			return err
		}
		if xml == nil {
			_, xml, _ = virsh("dumpxml", "--inactive", "bench")
		}
		// With a qube running: the cost of just connecting and listing.
		ls, err := qvm("ls")
		if err != nil {
			return err
		}
		vl, _, err := virsh("list")
		if err != nil {
			return err
		}
		sd, err := qvm("shutdown", "--wait", "bench")
		if err != nil {
			return err
		}
		if record {
			tStart, tBoot, tGuest, tShut = append(tStart, d), append(tBoot, up), append(tGuest, guest), append(tShut, sd)
			tLs, tVirshList = append(tLs, ls), append(tVirshList, vl)
		}
		time.Sleep(time.Second) // let QEMU's teardown finish before the next run
		return nil
	}
	// A first run (not counted) gives the XML qvm generates.
	if err := qvmCycle(false); err != nil {
		return "", err
	}

	// The same XML, started by virsh alone: its own copies of the images and
	// console file, a new name and UUID, defined once.
	vdir := filepath.Join(state, "virsh")
	os.MkdirAll(vdir, 0o755)
	bdir := filepath.Join(state, "appvms", "bench")
	x := string(xml)
	for _, v := range []string{"root", "private", "volatile"} {
		src := filepath.Join(bdir, v+"-dirty.img")
		dst := filepath.Join(vdir, v+".img")
		if o, err := exec.Command("cp", "--reflink=always", filepath.Join(bdir, v+".img"), dst).CombinedOutput(); err != nil && v != "volatile" {
			return "", fmt.Errorf("cp: %v %s", err, o)
		}
		if v == "volatile" {
			os.WriteFile(dst, nil, 0o600)
			os.Truncate(dst, 10<<30)
		}
		x = strings.ReplaceAll(x, src, dst)
	}
	vcons := filepath.Join(vdir, "console.log")
	x = strings.ReplaceAll(x, console, vcons)
	x = strings.Replace(x, "<name>bench</name>", "<name>bench-virsh</name>", 1)
	if i, j := strings.Index(x, "<uuid>"), strings.Index(x, "</uuid>"); i >= 0 && j > i {
		x = x[:i] + x[j+len("</uuid>"):]
	}
	xf := filepath.Join(vdir, "domain.xml")
	os.WriteFile(xf, []byte(x), 0o644)
	if _, _, err := virsh("define", xf); err != nil {
		return "", err
	}
	virshCycle := func() error {
		os.Remove(vcons)
		t0 := time.Now()
		d, _, err := virsh("start", "bench-virsh")
		if err != nil {
			return err
		}
		up, guest, err := waitUp(vcons, t0)
		if err != nil {
			return err
		}
		tVirsh, tVirshBoot, tVirshGuest = append(tVirsh, d), append(tVirshBoot, up), append(tVirshGuest, guest)
		if _, _, err := virsh("destroy", "bench-virsh"); err != nil {
			// virsh may report the domain gone while it is; check.
			if _, o, _ := virsh("domstate", "bench-virsh"); !bytes.Contains(o, []byte("shut off")) {
				return err
			}
		}
		time.Sleep(time.Second)
		return nil
	}
	// Alternate the two so a change in the machine's load hits both alike.
	for i := 0; i < reps; i++ {
		if err := qvmCycle(true); err != nil {
			return "", err
		}
		if err := virshCycle(); err != nil {
			return "", err
		}
	}
	virsh("undefine", "bench-virsh")

	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Embedded libvirt QEMU driver (`%s`), TCG (no KVM here), test guest %s (Debian cloud kernel + busybox initramfs, 192 MiB, 2 vCPUs), state on a loop-mounted btrfs (reflink). Median of %d runs each, qvm and virsh alternating, on a machine shared with other work (expect noise of some 100 ms).\n\n", "qemu:///embed", version, reps)
	b.WriteString("| step | qvm | bare virsh, same XML | qvm overhead |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| start until the domain runs (`qvm start` / `virsh start`) | %s | %s | %s |\n", ms(med(tStart)), ms(med(tVirsh)), ms(med(tStart)-med(tVirsh)))
	fmt.Fprintf(&b, "| start until the guest's console line (boot on TCG) | %s | %s | %s |\n", ms(med(tBoot)), ms(med(tVirshBoot)), ms(med(tBoot)-med(tVirshBoot)))
	fmt.Fprintf(&b, "| of that, the guest's own uptime at its console line | %s | %s | - |\n", ms(med(tGuest)), ms(med(tVirshGuest)))
	fmt.Fprintf(&b, "| connect to the embedded driver and list the running domain (`qvm ls` / `virsh list`) | %s | %s | %s |\n", ms(med(tLs)), ms(med(tVirshList)), ms(med(tLs)-med(tVirshList)))
	fmt.Fprintf(&b, "| `qvm shutdown --wait` (ACPI, guest halt, storage commit) | %s | - | - |\n", ms(med(tShut)))
	b.WriteString("\n`qvm start` does more than `virsh start`: it loads qubes.xml under its lock, verifies and starts the volumes (reflink copies of root and private, a fresh volatile), asks qmemmand (absent here), renders and defines the XML, creates the domain paused and resumes it. The reference's `qvm-start` cannot run here (it needs qubesd on Xen), so it is not measured.\n")
	return b.String(), nil
}
