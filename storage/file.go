package storage

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/qvm-dev/qvm/core"
)

// fileDriver is the legacy file pool (§5): P.img plus device-mapper
// snapshot COW files P-cow.img (and P-cow.img.old, its one revision).
type fileDriver struct {
	st  *Storage
	p   *core.PoolConfig
	dir string
}

func newFileDriver(st *Storage, p *core.PoolConfig) (Driver, error) {
	dir, err := poolDir(p)
	if err != nil {
		return nil, err
	}
	return &fileDriver{st: st, p: p, dir: dir}, nil
}

// emptyCOWSize is the persistent-snapshot header plus the first metadata
// chunk (chunk size 256 sectors); a COW with data beyond it is dirty.
const emptyCOWSize = 262144

type filePaths struct{ img, cow, old, imp string }

func (d *fileDriver) paths(v *Volume) (filePaths, error) {
	b, err := fileBase(d.dir, v.Vid())
	if err != nil {
		return filePaths{}, err
	}
	return filePaths{b + ".img", b + "-cow.img", b + "-cow.img.old", b + "-import.img"}, nil
}

func (d *fileDriver) must(v *Volume) filePaths {
	p, _ := d.paths(v)
	return p
}

// source returns the source volume's paths (snapshot volumes).
func (d *fileDriver) source(v *Volume) (filePaths, error) {
	b, err := fileBase(d.dir, v.Config.Source)
	if err != nil {
		return filePaths{}, err
	}
	return filePaths{b + ".img", b + "-cow.img", b + "-cow.img.old", b + "-import.img"}, nil
}

func (d *fileDriver) Create(_ context.Context, v *Volume) error {
	if v.Kind() == OriginSnapshot {
		return fmt.Errorf("snap_on_start + save_on_stop not supported by file driver")
	}
	if v.Kind() == Snapshot {
		return nil
	}
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if exists(p.img) {
		return fmt.Errorf("Volume %s already exists", p.img)
	}
	if err := os.MkdirAll(dirOf(p.img), 0o775); err != nil {
		return err
	}
	if err := createSparse(p.img, v.Config.Size); err != nil {
		return err
	}
	if v.Kind() == Origin {
		return os.Chmod(p.img, 0o664)
	}
	return nil
}

func dirOf(p string) string { return p[:strings.LastIndexByte(p, '/')] }

func (d *fileDriver) Remove(ctx context.Context, v *Volume) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	d.destroySnapshot(ctx, v)
	files := []string{p.imp}
	if v.Kind() != Snapshot {
		files = append(files, p.img)
	}
	if v.Kind() != Volatile {
		files = append(files, p.cow, p.old)
	}
	for _, f := range files {
		if err := removeFile(f); err != nil {
			return err
		}
	}
	if err := os.Remove(dirOf(p.img)); err == nil {
		_ = fsyncDir(dirOf(dirOf(p.img)))
	}
	return nil
}

func (d *fileDriver) Verify(_ context.Context, v *Volume) error {
	var img string
	switch v.Kind() {
	case Origin:
		img = d.must(v).img
	case Snapshot, OriginSnapshot:
		s, err := d.source(v)
		if err != nil {
			return err
		}
		img = s.img
	default:
		return nil
	}
	if !exists(img) {
		return fmt.Errorf("Missing image file: %s.", img)
	}
	return nil
}

func (d *fileDriver) Start(ctx context.Context, v *Volume) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if v.Kind() != Volatile && !v.SnapshotsDisabled() && !d.st.hasDM() {
		return fmt.Errorf("the file pool needs device-mapper to start %s (/dev/mapper is missing)", v.Vid())
	}
	switch v.Kind() {
	case Volatile:
		if err := removeFile(p.img); err != nil {
			return err
		}
		return createSparse(p.img, v.Config.Size)
	case Snapshot:
		if err := removeFile(p.cow); err != nil {
			return err
		}
	case Origin:
		if !exists(p.img) {
			return fmt.Errorf("Missing image file: %s", p.img)
		}
	}
	if v.SnapshotsDisabled() {
		return nil
	}
	if !exists(p.cow) {
		if err := createSparse(p.cow, v.Config.Size); err != nil {
			return err
		}
	}
	if v.Kind() == Snapshot {
		s, err := d.source(v)
		if err != nil {
			return err
		}
		if !exists(s.cow) {
			if err := createSparse(s.cow, v.Config.Size); err != nil {
				return err
			}
		}
		return d.createSnapshot(ctx, d.BlockDevice(v), s.img, s.cow, p.cow)
	}
	return d.createSnapshot(ctx, d.BlockDevice(v), p.img, p.cow, "")
}

func (d *fileDriver) Stop(ctx context.Context, v *Volume) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	switch v.Kind() {
	case Volatile:
		return removeFile(p.img)
	case Snapshot:
		d.destroySnapshot(ctx, v)
		return removeFile(p.cow)
	}
	if v.SnapshotsDisabled() {
		return nil
	}
	d.destroySnapshot(ctx, v)
	if !v.Config.RW {
		return removeFile(p.cow)
	}
	return d.commit(v, p)
}

// commit retires the COW (as the one revision when revisions are kept)
// and starts an empty one.
func (d *fileDriver) commit(v *Volume, p filePaths) error {
	if !exists(p.cow) {
		return nil
	}
	if v.Config.RevisionsToKeep != 0 {
		if err := renameFile(p.cow, p.old); err != nil {
			return err
		}
	} else if err := removeFile(p.cow); err != nil {
		return err
	}
	return createSparse(p.cow, v.Config.Size)
}

func (d *fileDriver) Resize(_ context.Context, v *Volume, size int64) error {
	if v.Config.SnapOnStart {
		return fmt.Errorf("Cannot resize volume based on a template - resizethe template instead")
	}
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if exists(p.img) {
		if err := resizeFile(p.img, size); err != nil {
			return err
		}
		updateLoopCapacity(p.img)
	}
	v.Config.Size = size
	return nil
}

func (d *fileDriver) Revert(_ context.Context, v *Volume, _ string) error {
	return fmt.Errorf("Revert is not supported by the file driver (volume %s)", v.Vid())
}

func (d *fileDriver) Revisions(v *Volume) ([]Revision, error) {
	var st unix.Stat_t
	if unix.Stat(d.must(v).old, &st) != nil {
		return nil, nil
	}
	return []Revision{{ID: "old", Time: isoUTC(timeOf(st.Ctim))}}, nil
}

func (d *fileDriver) Size(v *Volume) int64 {
	img := d.must(v).img
	if v.Config.SnapOnStart {
		s, _ := d.source(v)
		img = s.img
	}
	if n, ok := fileSize(img); ok {
		return n
	}
	return v.Config.Size
}

func (d *fileDriver) Usage(v *Volume) int64 {
	p := d.must(v)
	switch v.Kind() {
	case Volatile:
		return allocated(p.img)
	case Snapshot:
		return allocated(p.cow)
	}
	return allocated(p.img) + allocated(p.cow)
}

// IsDirty: the COW of an origin holds data beyond the empty header.
func (d *fileDriver) IsDirty(v *Volume) bool {
	if v.Kind() != Origin {
		return false
	}
	f, err := os.Open(d.must(v).cow)
	if err != nil {
		return false
	}
	defer f.Close()
	off, err := unix.Seek(int(f.Fd()), emptyCOWSize, unix.SEEK_DATA)
	return err == nil && off >= emptyCOWSize
}

func (d *fileDriver) IsOutdated(*Volume) (bool, bool) { return false, true }
func (d *fileDriver) Path(v *Volume) string           { return d.must(v).img }

// devIno is "<st_dev hex>:<st_ino>", the reference's dm device naming.
func devIno(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return "missing"
	}
	return strconv.FormatUint(st.Dev, 16) + ":" + strconv.FormatUint(st.Ino, 10)
}

func (d *fileDriver) BlockDevice(v *Volume) string {
	p := d.must(v)
	switch {
	case v.Kind() == Volatile || v.SnapshotsDisabled():
		return p.img
	case v.Kind() == Snapshot:
		s, _ := d.source(v)
		return "/dev/mapper/snapshot-" + devIno(s.img) + "-" + devIno(s.cow) + "-" + devIno(p.cow)
	}
	return "/dev/mapper/origin-" + devIno(p.img)
}

func (d *fileDriver) Export(_ context.Context, v *Volume) (string, error) {
	if v.Running() {
		return "", fmt.Errorf("file pool cannot export running volumes")
	}
	if d.IsDirty(v) {
		return "", fmt.Errorf("file pool cannot export dirty volumes")
	}
	return d.must(v).img, nil
}

func (d *fileDriver) ImportBegin(_ context.Context, v *Volume, size int64) (string, error) {
	if !v.Config.SaveOnStop {
		return "", fmt.Errorf("Can not import into save_on_stop=False volume %s", v.Vid())
	}
	p, err := d.paths(v)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dirOf(p.img), 0o775); err != nil {
		return "", err
	}
	return p.imp, createSparse(p.imp, size)
}

func (d *fileDriver) ImportEnd(_ context.Context, v *Volume, ok bool) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if !ok {
		return removeFile(p.imp)
	}
	return renameFile(p.imp, p.img)
}

func (d *fileDriver) CloneFrom(ctx context.Context, dst, src *Volume) (bool, error) {
	if src.Config.SnapOnStart {
		return true, fmt.Errorf("Can not import snapshot volume %s in to pool %s", src.Vid(), dst.Config.Pool)
	}
	if !dst.Config.SaveOnStop {
		return true, nil
	}
	from, err := src.drv.Export(ctx, src)
	if err != nil {
		return true, err
	}
	if fi, err := os.Stat(from); err != nil || !fi.Mode().IsRegular() {
		return false, nil
	}
	p, err := d.paths(dst)
	if err != nil {
		return true, err
	}
	if _, err := copyFile(ctx, d.st.o.Runner, from, p.img, copyOpts{size: -1}); err != nil {
		return true, fmt.Errorf("Error while copying %s to %s: %w", from, p.img, err)
	}
	return true, nil
}

// createSnapshot is the reference's create-snapshot script: loop devices
// for the files, a dm snapshot of BASE with COW, then a snapshot-origin
// (origin volumes) or an outer snapshot with COW2 (snapshot volumes).
func (d *fileDriver) createSnapshot(ctx context.Context, dev, base, cow, cow2 string) error {
	name := strings.TrimPrefix(dev, "/dev/mapper/")
	if d.st.dmExists(name) {
		return nil
	}
	run := func(args ...string) (string, error) {
		out, stderr, err := d.st.o.Runner.Run(ctx, nil, args[0], args[1:]...)
		if err != nil {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(stderr)))
		}
		return strings.TrimSpace(string(out)), nil
	}
	size, ok := fileSize(base)
	if !ok {
		return fmt.Errorf("Missing image file: %s", base)
	}
	sectors := strconv.FormatInt(size/512, 10)
	lbase, err := run("losetup", "-f", "--show", base)
	if err != nil {
		return err
	}
	lcow, err := run("losetup", "-f", "--show", cow)
	if err != nil {
		return err
	}
	inner := "snapshot-" + devIno(base) + "-" + devIno(cow)
	if !d.st.dmExists(inner) {
		if _, err := run("dmsetup", "create", inner, "--table", "0 "+sectors+" snapshot "+lbase+" "+lcow+" P 256"); err != nil {
			return err
		}
	}
	if cow2 == "" {
		_, err = run("dmsetup", "create", name, "--table", "0 "+sectors+" snapshot-origin "+lbase)
		return err
	}
	lcow2, err := run("losetup", "-f", "--show", cow2)
	if err != nil {
		return err
	}
	_, err = run("dmsetup", "create", name, "--table", "0 "+sectors+" snapshot /dev/mapper/"+inner+" "+lcow2+" P 256")
	return err
}

func (d *fileDriver) destroySnapshot(ctx context.Context, v *Volume) {
	dev := d.BlockDevice(v)
	if !strings.HasPrefix(dev, "/dev/mapper/") || !d.st.dmExists(strings.TrimPrefix(dev, "/dev/mapper/")) {
		return
	}
	if _, stderr, err := d.st.o.Runner.Run(ctx, nil, "dmsetup", "remove", strings.TrimPrefix(dev, "/dev/mapper/")); err != nil {
		d.st.logf("dmsetup remove %s: %s", dev, strings.TrimSpace(string(stderr)))
	}
	// The inner snapshot goes too unless another device still uses it
	// (dmsetup then refuses, which is fine).
	base, cow := d.must(v).img, d.must(v).cow
	if v.Kind() == Snapshot {
		s, _ := d.source(v)
		base, cow = s.img, s.cow
	}
	if inner := "snapshot-" + devIno(base) + "-" + devIno(cow); d.st.dmExists(inner) {
		_, _, _ = d.st.o.Runner.Run(ctx, nil, "dmsetup", "remove", inner)
	}
}
