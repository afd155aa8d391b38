package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/qvm-dev/qvm/core"
)

// ReflinkSupported probes FICLONE between two temp files in dir (writing
// "foo" first), as the reference does before choosing file-reflink.
func ReflinkSupported(dir string) bool {
	src, err := os.CreateTemp(dir, ".reflink-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write([]byte("foo")); err != nil {
		return false
	}
	dst, err := os.CreateTemp(dir, ".reflink-probe-")
	if err != nil {
		return false
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil
}

// Setup prepares a new pool (qvm pool add): the directory, the reflink
// check (unless setup_check=False) and appvms/ and vm-templates/ for file
// pools; an existing thin pool for lvm_thin.
func Setup(ctx context.Context, p *core.PoolConfig, o Options) error {
	switch p.Driver {
	case "file", "file-reflink", "linux-kernel":
		dir, _ := p.Get("dir_path")
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("dir_path must be an absolute path, got %q", dir)
		}
		_, statErr := os.Stat(dir)
		created := errors.Is(statErr, os.ErrNotExist)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if created {
			_ = fsyncDir(filepath.Dir(dir))
		}
		if p.Driver == "file-reflink" {
			check, _ := p.Get("setup_check")
			if b, err := core.ParseBool(check); check == "" || (err == nil && b) {
				if !ReflinkSupported(dir) {
					if created {
						os.Remove(dir)
					}
					return fmt.Errorf("The filesystem for '%s' does not support reflinks. If you can live with delays on VM startup/shutdown/etc. and wasted disk space, pass the 'setup_check=False' option.", dir)
				}
			}
		}
		if p.Driver != "linux-kernel" {
			for _, sub := range []string{"appvms", "vm-templates"} {
				if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
					return err
				}
			}
		}
		return nil
	case "lvm_thin":
		return lvmSetup(ctx, Open(core.NewApp("", core.Host{}), o), p)
	}
	return fmt.Errorf("Unknown storage pool driver: '%s'", p.Driver)
}

// Usage is a pool's size and usage (§4): statvfs of dir_path for file
// pools, the thin pool LV for lvm_thin, nothing for linux-kernel.
func (s *Storage) Usage(ctx context.Context, p *core.PoolConfig) PoolUsage {
	switch p.Driver {
	case "file", "file-reflink":
		dir, _ := p.Get("dir_path")
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			if p.Driver == "file" {
				return PoolUsage{Known: true}
			}
			return PoolUsage{}
		}
		return PoolUsage{Size: st.Frsize * int64(st.Blocks), Usage: st.Frsize * int64(st.Blocks-st.Bfree), Known: true}
	case "lvm_thin":
		drv, err := s.Driver(p.Name)
		if err != nil {
			return PoolUsage{}
		}
		d := drv.(*lvmDriver)
		if err := d.refresh(ctx); err != nil {
			return PoolUsage{Known: true}
		}
		i := d.cache[d.vg+"/"+d.pool]
		return PoolUsage{Size: i.Size, Usage: int64(float64(i.Size) / 100 * i.DataPercent), Known: true}
	}
	return PoolUsage{}
}

// IncludedIn names the file pool whose directory contains p's directory
// (the longest such, so the nearest), or "".
func IncludedIn(app *core.App, p *core.PoolConfig) string {
	dir, ok := p.Get("dir_path")
	if !ok || p.Driver == "lvm_thin" || p.Driver == "linux-kernel" {
		return ""
	}
	real := func(d string) string {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			return r
		}
		return filepath.Clean(d)
	}
	mine := real(dir)
	best, bestLen := "", -1
	for _, o := range app.Pools {
		od, ok := o.Get("dir_path")
		if o == p || !ok || o.Driver == "linux-kernel" || o.Driver == "lvm_thin" {
			continue
		}
		r := real(od)
		if (mine == r || strings.HasPrefix(mine, strings.TrimSuffix(r, "/")+"/")) && len(r) > bestLen {
			best, bestLen = o.Name, len(r)
		}
	}
	return best
}
