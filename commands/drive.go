package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/core/virt"
)

// startDrive is the block device of qvm start --drive: attached for this
// start only (the stock tool assigns it before the start and unassigns it
// after; qvm never records it).
type startDrive struct {
	devtype string // cdrom or disk
	backend string
	dev     string // device name in the backend, or an absolute file path
}

const badImage = "Incorrect image name: image must be in the format of VMNAME:full_path, for example dom0:/home/user/test.iso"

// parseDrive reads [hd:|cdrom:]BACKEND:DEV (default cdrom).
func parseDrive(app *core.App, spec string) (*startDrive, error) {
	d := &startDrive{devtype: "cdrom"}
	if rest, ok := strings.CutPrefix(spec, "hd:"); ok {
		d.devtype, spec = "disk", rest
	} else if rest, ok := strings.CutPrefix(spec, "cdrom:"); ok {
		spec = rest
	}
	backend, dev, ok := strings.Cut(spec, ":")
	if !ok || backend == "" || dev == "" {
		return nil, usagef("%s", badImage)
	}
	if _, err := app.Domain(backend); err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	if strings.HasPrefix(dev, "/") && backend != "dom0" {
		return nil, &ExitError{Code: 1, Msg: fmt.Sprintf("Error: image files in %s need qrexec to make a loop device there, which qvm does not have; use a dom0 path or a device of %s", backend, backend), Raw: true}
	}
	if !strings.HasPrefix(dev, "/") && strings.Contains(dev, "/") || strings.Contains(dev, "..") {
		return nil, usagef("%s", badImage)
	}
	d.backend, d.dev = backend, dev
	return d, nil
}

// attach makes the device ready (a loop device for a dom0 file) and
// returns its disk and what undoes it.
func (sd *startDrive) attach(ctx context.Context, h *hv) (virt.Disk, func(), error) {
	disk := virt.Disk{DevType: sd.devtype, ReadOnly: sd.devtype == "cdrom"}
	if sd.backend != "dom0" {
		if h.conn.Driver() != "xen" {
			return disk, nil, fmt.Errorf("Block device %s:%s not available: devices of other qubes need Xen backend domains (%s has none)", sd.backend, sd.dev, h.conn.Driver())
		}
		b, _ := h.app.Domain(sd.backend)
		if !h.state(b).Active() {
			return disk, nil, fmt.Errorf("Block device %s:%s not available: %s is not running", sd.backend, sd.dev, sd.backend)
		}
		disk.Path, disk.Backend = "/dev/"+sd.dev, sd.backend
		return disk, func() {}, nil
	}
	if !strings.HasPrefix(sd.dev, "/") {
		path := "/dev/" + sd.dev
		if st, err := os.Stat(path); err != nil || st.Mode()&os.ModeDevice == 0 {
			return disk, nil, fmt.Errorf("Block device dom0:%s not available", sd.dev)
		}
		disk.Path = path
		return disk, func() {}, nil
	}
	if _, err := os.Stat(sd.dev); err != nil {
		return disk, nil, fmt.Errorf("Block device dom0:%s not available: %w", sd.dev, errors.Unwrap(err))
	}
	args := []string{"-f", "--show"}
	if disk.ReadOnly {
		args = append(args, "-r")
	}
	out, err := exec.CommandContext(ctx, "losetup", append(args, sd.dev)...).Output()
	if err != nil {
		msg := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return disk, nil, fmt.Errorf("losetup -f --show %s: %s", sd.dev, msg)
	}
	loop := strings.TrimSpace(string(out))
	// The device node may appear a moment after losetup returns.
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(loop); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	disk.Path = loop
	return disk, func() { _ = exec.Command("losetup", "-d", loop).Run() }, nil
}

// loopNote is where qvm notes the loop devices it made for a qube's start,
// so that its stop frees them.
func (env *Env) loopNote(name string) string {
	dir := env.storageOptions().RunDir
	if dir == "" {
		dir = "/var/run/qubes"
	}
	return filepath.Join(dir, "qvm-loop-"+name)
}

// noteLoop records a loop device made for qube name.
func (env *Env) noteLoop(name, loop string) {
	p := env.loopNote(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, loop)
			f.Close()
		}
	}
}

// freeLoops detaches the loop devices made for qube name's last start.
func (env *Env) freeLoops(name string) {
	p := env.loopNote(name)
	b, err := os.ReadFile(p)
	if err != nil {
		return
	}
	for _, loop := range strings.Fields(string(b)) {
		if strings.HasPrefix(loop, "/dev/loop") {
			if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
				env.warnf(name, "losetup -d %s: %s", loop, strings.TrimSpace(string(out)))
			}
		}
	}
	os.Remove(p)
}
