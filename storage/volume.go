package storage

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/internal/failpoint"
)

// Volume is one volume of a qube: its saved config, its pool and, for a
// snapshot volume, the volume it snapshots.
type Volume struct {
	Domain *core.Domain
	Config *core.VolumeConfig // drivers update Size here; the caller saves qubes.xml
	Pool   *core.PoolConfig
	// Source is the resolved source of a snap_on_start volume (nil when the
	// volume has none or it cannot be found; Verify then fails).
	Source *Volume

	st  *Storage
	drv Driver
	vid string
}

// Name is the volume name inside the qube (root, private, volatile, kernel, …).
func (v *Volume) Name() string { return v.Config.Name }

// Vid is the volume id inside its pool (for linux-kernel: the kernel version).
func (v *Volume) Vid() string { return v.vid }

// Kind tells which of the four flag combinations the volume is.
func (v *Volume) Kind() Kind {
	switch {
	case v.Config.SnapOnStart && v.Config.SaveOnStop:
		return OriginSnapshot
	case v.Config.SnapOnStart:
		return Snapshot
	case v.Config.SaveOnStop:
		return Origin
	}
	return Volatile
}

// Kind is the snap_on_start/save_on_stop combination.
type Kind int

// The four kinds of spec/storage.md §1.2.
const (
	Volatile       Kind = iota // fresh empty image at start, discarded at stop
	Snapshot                   // fresh copy of the source at start, discarded at stop
	Origin                     // own data, committed at stop
	OriginSnapshot             // both flags: no driver supports it
)

// SnapshotsDisabled: revisions_to_keep -1 on an origin volume, used in
// place without snapshot or revision.
func (v *Volume) SnapshotsDisabled() bool {
	return v.Config.RevisionsToKeep == -1 && !v.Config.SnapOnStart && v.Config.SaveOnStop
}

// Ephemeral is the effective ephemeral flag (§1.3).
func (v *Volume) Ephemeral() bool {
	if v.Config.Ephemeral != nil {
		return *v.Config.Ephemeral
	}
	if v.Config.SnapOnStart || v.Config.SaveOnStop || !v.Config.RW {
		return false
	}
	s, _ := v.Pool.Get("ephemeral_volatile")
	b, _ := core.ParseBool(s)
	return b
}

// Size is the volume size: the real image size when it exists, else the
// nominal size.
func (v *Volume) Size() int64 { return v.drv.Size(v) }

// Usage is the number of bytes the volume takes on disk.
func (v *Volume) Usage() int64 { return v.drv.Usage(v) }

// IsDirty: an origin volume that was not cleanly committed (running or crashed).
func (v *Volume) IsDirty() bool { return v.drv.IsDirty(v) }

// IsOutdated reports whether a snapshot volume's source was committed
// since the snapshot was taken; known is false where the driver cannot tell.
func (v *Volume) IsOutdated() (outdated, known bool) { return v.drv.IsOutdated(v) }

// Revisions lists the revisions available for revert, oldest first.
func (v *Volume) Revisions() ([]Revision, error) { return v.drv.Revisions(v) }

// Path is the driver's data path (clean image, LV device, modules.img).
func (v *Volume) Path() string { return v.drv.Path(v) }

// Revision is one old state of a volume.
type Revision struct {
	ID   string // driver-specific id (reflink: "3", lvm: "1521065904-back")
	Time string // UTC, YYYY-MM-DDTHH:MM:SS
}

// BlockDevice is what the domain XML gets for a volume.
type BlockDevice struct {
	Path    string // file or device node
	Name    string // volume name (root, private, volatile, kernel)
	RW      bool
	Devtype string // "disk"
}

// BlockDevice returns the path the running qube uses; ok is false when the
// volume has no device (a kernel volume without modules.img).
func (v *Volume) BlockDevice() (BlockDevice, bool) {
	p := v.drv.BlockDevice(v)
	if p == "" {
		return BlockDevice{}, false
	}
	if v.Ephemeral() && v.Running() {
		p = "/dev/mapper/" + v.cryptName()
	}
	return BlockDevice{Path: p, Name: v.Name(), RW: v.Config.RW, Devtype: "disk"}, true
}

// Running reports whether the owning qube's storage is started (the
// running marker of §1.3 exists).
func (v *Volume) Running() bool {
	_, err := os.Stat(v.st.markerPath(v))
	return err == nil
}

// Verify checks that what a start needs exists.
func (v *Volume) Verify(ctx context.Context) error { return v.drv.Verify(ctx, v) }

// Start prepares the volume for a running qube (snapshot, dirty image,
// fresh volatile). It does not write the running marker; Storage.Start does.
func (v *Volume) Start(ctx context.Context) error {
	if v.Kind() == OriginSnapshot {
		return fmt.Errorf("snap_on_start + save_on_stop not supported on volume %s", v.vid)
	}
	return v.drv.Start(ctx, v)
}

// Stop commits (origin) or discards (snapshot, volatile) the running state.
func (v *Volume) Stop(ctx context.Context) error { return v.drv.Stop(ctx, v) }

// Resize changes the volume size. Shrinking is the caller's decision (the
// CLI refuses it without --force, as the stock client does).
func (v *Volume) Resize(ctx context.Context, size int64) error {
	if size < 0 {
		return fmt.Errorf("Invalid size %d for volume %s", size, v.vid)
	}
	if !v.Config.RW {
		if v.Pool.Driver == "file-reflink" {
			return fmt.Errorf("Cannot resize: %s is read-only", v.vid)
		}
		return fmt.Errorf("Can not resize readonly volume %s", v.vid)
	}
	return v.drv.Resize(ctx, v, size)
}

// Revert makes a revision the current state; rev "" picks the newest.
func (v *Volume) Revert(ctx context.Context, rev string) error {
	revs, err := v.Revisions()
	if err != nil {
		return err
	}
	if rev == "" {
		if len(revs) == 0 {
			return fmt.Errorf("No snapshots available")
		}
		rev = revs[len(revs)-1].ID
	}
	if strings.Trim(rev, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.-") != "" {
		return fmt.Errorf("Invalid revision: %q", rev)
	}
	found := false
	for _, r := range revs {
		found = found || r.ID == rev
	}
	if !found {
		return fmt.Errorf("Volume %s has no revision %s", v.vid, rev)
	}
	return v.drv.Revert(ctx, v, rev)
}

// Export gives a stable view of the committed data (for a running origin
// volume: the state from before the start). Close it when done.
func (v *Volume) Export(ctx context.Context) (*Export, error) {
	p, err := v.drv.Export(ctx, v)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", v.vid, err)
	}
	size, err := fileOrDeviceSize(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("export %s: %w", v.vid, err)
	}
	return &Export{Path: p, Size: size, f: f}, nil
}

// Import replaces the volume's data with exactly size bytes from r (a
// restore, qvm volume import). All-zero blocks are written as holes. The
// previous state becomes a revision where the driver keeps revisions; on
// error the volume is left as it was. The volume's size becomes size.
func (v *Volume) Import(ctx context.Context, r io.Reader, size int64) error {
	if size < 0 {
		return fmt.Errorf("Invalid size %d for volume %s", size, v.vid)
	}
	if v.Running() {
		return fmt.Errorf("Domain is not powered off: %s", v.Domain.Name())
	}
	p, err := v.drv.ImportBegin(ctx, v, size)
	if err != nil {
		return err
	}
	werr := copyExact(ctx, p, r, size)
	if werr == nil {
		werr = failpoint.Hit(FailpointImport)
	}
	if err := v.drv.ImportEnd(ctx, v, werr == nil); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("Data import failed: %w", werr)
	}
	v.Config.Size = size
	return nil
}

// ImportFile makes the file at path the volume's new data and consumes the
// file. Restore stages each volume in the state directory: where the
// driver's import target is a regular file on the same filesystem the
// staged file is moved into place (no second copy of the data), otherwise
// (a block device, another filesystem) it is copied as Import does.
func (v *Volume) ImportFile(ctx context.Context, path string) error {
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("Data import failed: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("Data import failed: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("Data import failed: %s is not a regular file", path)
	}
	size := fi.Size()
	if v.Running() {
		return fmt.Errorf("Domain is not powered off: %s", v.Domain.Name())
	}
	p, err := v.drv.ImportBegin(ctx, v, size)
	if err != nil {
		return err
	}
	moved, werr := moveInto(f, path, p)
	if werr == nil && !moved {
		werr = copyExact(ctx, p, io.NewSectionReader(f, 0, size), size)
	}
	if werr == nil {
		werr = failpoint.Hit(FailpointImport)
	}
	if err := v.drv.ImportEnd(ctx, v, werr == nil); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("Data import failed: %w", werr)
	}
	v.Config.Size = size
	return nil
}

// moveInto renames src over dst when dst is a regular file on src's
// filesystem, taking dst's mode and owner; false means copy instead.
func moveInto(f *os.File, src, dst string) (bool, error) {
	sfi, err1 := f.Stat()
	dfi, err2 := os.Lstat(dst)
	if err1 != nil || err2 != nil || !dfi.Mode().IsRegular() {
		return false, nil
	}
	ss, ok1 := sfi.Sys().(*syscall.Stat_t)
	ds, ok2 := dfi.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || ss.Dev != ds.Dev {
		return false, nil
	}
	if err := f.Chmod(dfi.Mode().Perm()); err != nil {
		return false, err
	}
	if err := f.Chown(int(ds.Uid), int(ds.Gid)); err != nil {
		return false, err
	}
	// The data must be on disk before the commit names it.
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return false, err
	}
	return true, renameFile(src, dst)
}

// Export is a read-only view of a volume's committed data.
type Export struct {
	Path string // file or device the data was read from
	Size int64
	f    *os.File
}

// Open returns a reader of the whole volume. The data stays the exported
// state even if the volume is committed meanwhile (the file is held open).
func (e *Export) Open() io.ReadCloser {
	return io.NopCloser(io.NewSectionReader(e.f, 0, e.Size))
}

// ReaderAt reads the exported data at any offset.
func (e *Export) ReaderAt() io.ReaderAt { return e.f }

// Extent is a region of data (the rest of the volume reads as zeroes).
type Extent struct{ Offset, Length int64 }

// Extents lists the data regions (SEEK_DATA/SEEK_HOLE); a device or a
// filesystem without hole reporting gives one extent of the whole size.
func (e *Export) Extents() ([]Extent, error) {
	fd := int(e.f.Fd())
	var out []Extent
	for off := int64(0); off < e.Size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			return []Extent{{0, e.Size}}, nil
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h > e.Size {
			h = e.Size
		}
		out = append(out, Extent{d, h - d})
		off = h
	}
	return out, nil
}

// Close releases the export.
func (e *Export) Close() error { return e.f.Close() }

// cryptName is the dm-crypt mapping of an ephemeral volume (§3.3); lvm
// volumes name it after their LV.
func (v *Volume) cryptName() string {
	if v.Pool.Driver == "lvm_thin" {
		return strings.TrimPrefix(mapperPath(v.vid), "/dev/mapper/") + "@crypt"
	}
	q := strings.ReplaceAll(strings.ReplaceAll(v.Domain.Name(), "_", "_u"), "-", "_d")
	return "vm-volatile-" + q + "-crypt@" + v.Name()
}

// Clear empties the volume (all zeroes, same size); the old data becomes
// a revision where the driver keeps revisions.
func (v *Volume) Clear(ctx context.Context) error {
	if v.Running() {
		return fmt.Errorf("Domain is not powered off: %s", v.Domain.Name())
	}
	size := v.Size()
	if _, err := v.drv.ImportBegin(ctx, v, size); err != nil {
		return err
	}
	return v.drv.ImportEnd(ctx, v, true)
}
