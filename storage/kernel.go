package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/qvm-dev/qvm/core"
)

// kernelDriver is linux-kernel (§8): read-only kernel directories
// DIR/VERSION/{vmlinuz,initramfs,modules.img}; the vid is the qube's
// kernel property.
type kernelDriver struct {
	st  *Storage
	dir string
}

func newKernelDriver(st *Storage, p *core.PoolConfig) (Driver, error) {
	dir, err := poolDir(p)
	if err != nil {
		return nil, err
	}
	return &kernelDriver{st: st, dir: dir}, nil
}

func (d *kernelDriver) file(v *Volume, name string) string {
	k := v.Vid()
	if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
		return ""
	}
	return filepath.Join(d.dir, k, name)
}

func (d *kernelDriver) Create(context.Context, *Volume) error { return nil }
func (d *kernelDriver) Remove(context.Context, *Volume) error { return nil }
func (d *kernelDriver) Start(context.Context, *Volume) error  { return nil }
func (d *kernelDriver) Stop(context.Context, *Volume) error   { return nil }

func (d *kernelDriver) Verify(_ context.Context, v *Volume) error {
	if v.Vid() == "" {
		return nil
	}
	p := d.file(v, "vmlinuz")
	if p == "" || !exists(p) {
		if p == "" {
			p = filepath.Join(d.dir, v.Vid(), "vmlinuz")
		}
		return fmt.Errorf("Missing file: %s", p)
	}
	return nil
}

func (d *kernelDriver) Resize(context.Context, *Volume, int64) error {
	return fmt.Errorf("Can not resize a kernel volume")
}

func (d *kernelDriver) Revert(context.Context, *Volume, string) error {
	return fmt.Errorf("kernel volumes have no revisions")
}

func (d *kernelDriver) Revisions(*Volume) ([]Revision, error) { return nil, nil }

func (d *kernelDriver) Size(v *Volume) int64 {
	n, _ := fileSize(d.file(v, "modules.img"))
	return n
}

func (d *kernelDriver) Usage(v *Volume) int64 { return allocated(d.file(v, "modules.img")) }

func (d *kernelDriver) IsDirty(*Volume) bool                           { return false }
func (d *kernelDriver) IsOutdated(*Volume) (bool, bool)                { return false, true }
func (d *kernelDriver) Path(v *Volume) string                          { return d.file(v, "modules.img") }
func (d *kernelDriver) ImportEnd(context.Context, *Volume, bool) error { return nil }

func (d *kernelDriver) BlockDevice(v *Volume) string {
	p := d.file(v, "modules.img")
	if p == "" || !exists(p) {
		return ""
	}
	return p
}

func (d *kernelDriver) Export(_ context.Context, v *Volume) (string, error) {
	p := d.file(v, "modules.img")
	if p == "" {
		return "", fmt.Errorf("volume %s of %s has no kernel", v.Name(), v.Domain.Name())
	}
	return p, nil
}

func (d *kernelDriver) ImportBegin(_ context.Context, v *Volume, _ int64) (string, error) {
	return "", fmt.Errorf("Can not import into kernel volume %s", v.Vid())
}

func (d *kernelDriver) CloneFrom(_ context.Context, _, src *Volume) (bool, error) {
	if src.Pool.Driver == "linux-kernel" {
		return true, nil
	}
	return true, fmt.Errorf("clone of LinuxModules volume from different volume type is not supported")
}

// KernelVersions lists the kernel directories of a linux-kernel pool.
func KernelVersions(p *core.PoolConfig) ([]string, error) {
	dir, err := poolDir(p)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
