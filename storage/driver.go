package storage

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/qvm-dev/qvm/core"
)

// Driver is one pool kind. Every method gets the volume it acts on; the
// Storage that owns the driver serialises calls through the qubes.xml lock
// its caller holds. Volume has the checks common to all drivers (kinds,
// read-only, revision ids); drivers add their own.
type Driver interface {
	// Create makes the volume's initial data (an empty origin image; nothing
	// for snapshot and volatile volumes on most drivers).
	Create(ctx context.Context, v *Volume) error
	// Remove deletes every file or LV of the volume.
	Remove(ctx context.Context, v *Volume) error
	// Verify checks the committed data a start needs exists.
	Verify(ctx context.Context, v *Volume) error
	// Start and Stop: see Volume.Start and Volume.Stop.
	Start(ctx context.Context, v *Volume) error
	Stop(ctx context.Context, v *Volume) error
	// Resize changes the data size (running: the running copy).
	Resize(ctx context.Context, v *Volume, size int64) error
	// Revert makes revision rev (already checked to exist) current.
	Revert(ctx context.Context, v *Volume, rev string) error
	// Revisions lists the old states, oldest first.
	Revisions(v *Volume) ([]Revision, error)
	Size(v *Volume) int64
	Usage(v *Volume) int64
	IsDirty(v *Volume) bool
	IsOutdated(v *Volume) (outdated, known bool)
	// Path is the committed data; BlockDevice what a running qube uses ("" none).
	Path(v *Volume) string
	BlockDevice(v *Volume) string
	// Export returns the file or device holding the committed data.
	Export(ctx context.Context, v *Volume) (string, error)
	// ImportBegin prepares a place for size bytes of new data and returns its
	// path; ImportEnd(true) makes it current, ImportEnd(false) drops it.
	ImportBegin(ctx context.Context, v *Volume, size int64) (string, error)
	ImportEnd(ctx context.Context, v *Volume, ok bool) error
	// CloneFrom copies src's committed data into dst the fast way (reflink,
	// thin snapshot). handled=false asks the caller to stream the data.
	CloneFrom(ctx context.Context, dst, src *Volume) (handled bool, err error)
}

// PoolUsage is a pool's size and usage in bytes (known=false: not reported).
type PoolUsage struct {
	Size, Usage int64
	Known       bool
}

func newDriver(st *Storage, p *core.PoolConfig) (Driver, error) {
	switch p.Driver {
	case "file-reflink":
		return newReflinkDriver(st, p)
	case "file":
		return newFileDriver(st, p)
	case "lvm_thin":
		return newLVMDriver(st, p)
	case "linux-kernel":
		return newKernelDriver(st, p)
	}
	return nil, fmt.Errorf("pool %s: unknown storage driver %q", p.Name, p.Driver)
}

func poolDir(p *core.PoolConfig) (string, error) {
	d, ok := p.Get("dir_path")
	if !ok || d == "" {
		return "", fmt.Errorf("pool %s has no dir_path", p.Name)
	}
	if !filepath.IsAbs(d) {
		return "", fmt.Errorf("pool %s: dir_path must be an absolute path, got %q", p.Name, d)
	}
	return filepath.Clean(d), nil
}
