package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/qvm-dev/qvm/core"
)

// reflinkDriver is file-reflink (spec/storage.md §6): plain image files on
// a filesystem with reflinks (btrfs, xfs), copies that share extents.
type reflinkDriver struct {
	st  *Storage
	p   *core.PoolConfig
	dir string
}

func newReflinkDriver(st *Storage, p *core.PoolConfig) (Driver, error) {
	dir, err := poolDir(p)
	if err != nil {
		return nil, err
	}
	return &reflinkDriver{st: st, p: p, dir: dir}, nil
}

// base is dir_path/<vid>; vids other than appvms/… and vm-templates/… are
// refused so a crafted qubes.xml cannot point outside the pool.
func (d *reflinkDriver) base(v *Volume) (string, error) {
	return fileBase(d.dir, v.Vid())
}

func fileBase(dir, vid string) (string, error) {
	if !(strings.HasPrefix(vid, "appvms/") || strings.HasPrefix(vid, "vm-templates/")) ||
		strings.Contains(vid, "..") || strings.Count(vid, "/") != 2 || strings.HasSuffix(vid, "/") {
		return "", fmt.Errorf("invalid volume id %q (want appvms/VM/NAME or vm-templates/VM/NAME)", vid)
	}
	return filepath.Join(dir, vid), nil
}

type reflinkPaths struct{ base, clean, dirty, precache, imp string }

func (d *reflinkDriver) paths(v *Volume) (reflinkPaths, error) {
	b, err := d.base(v)
	if err != nil {
		return reflinkPaths{}, err
	}
	return reflinkPaths{b, b + ".img", b + "-dirty.img", b + "-precache.img", b + "-import.img"}, nil
}

func (d *reflinkDriver) mustPaths(v *Volume) reflinkPaths {
	p, _ := d.paths(v)
	return p
}

// revision is one P.img.N@TIMESTAMPZ file.
type revFile struct {
	id   int
	time string
	path string
}

const revTimeLayout = "2006-01-02T15:04:05"

func (d *reflinkDriver) revisionFiles(p reflinkPaths) []revFile {
	matches, _ := filepath.Glob(p.clean + ".*?@????-??-??T??:??:??Z")
	var out []revFile
	for _, m := range matches {
		rest := strings.TrimPrefix(m, p.clean+".")
		id, ts, ok := strings.Cut(rest, "@")
		n, err := strconv.Atoi(id)
		if !ok || err != nil || n < 1 {
			continue
		}
		out = append(out, revFile{n, strings.TrimSuffix(ts, "Z"), m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (d *reflinkDriver) Revisions(v *Volume) ([]Revision, error) {
	p, err := d.paths(v)
	if err != nil {
		return nil, err
	}
	var out []Revision
	for _, r := range d.revisionFiles(p) {
		out = append(out, Revision{ID: strconv.Itoa(r.id), Time: r.time})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
	return out, nil
}

// removeTemps deletes every "<image>~random" and the import image.
func (d *reflinkDriver) removeTemps(p reflinkPaths) error {
	matches, _ := filepath.Glob(p.base + "*.img*~*")
	for _, m := range matches {
		if err := removeFile(m); err != nil {
			return err
		}
	}
	return removeFile(p.imp)
}

func (d *reflinkDriver) removeAll(p reflinkPaths) error {
	if err := d.removeTemps(p); err != nil {
		return err
	}
	for _, r := range d.revisionFiles(p) {
		if err := removeFile(r.path); err != nil {
			return err
		}
	}
	for _, f := range []string{p.clean, p.precache, p.dirty} {
		if err := removeFile(f); err != nil {
			return err
		}
	}
	return nil
}

func (d *reflinkDriver) copy(ctx context.Context, src, dst string, o copyOpts) error {
	_, err := copyFile(ctx, d.st.o.Runner, src, dst, o)
	return err
}

// withPrecache deletes the precache, runs change (which replaces the
// clean image) and makes a fresh precache copy keeping the clean's mtime.
func (d *reflinkDriver) withPrecache(ctx context.Context, v *Volume, p reflinkPaths, change func() error) error {
	if err := removeFile(p.precache); err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	if v.SnapshotsDisabled() {
		return nil
	}
	return d.copy(ctx, p.clean, p.precache, copyOpts{size: -1, keepMtime: true})
}

func (d *reflinkDriver) Create(ctx context.Context, v *Volume) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.base), 0o775); err != nil {
		return err
	}
	if err := d.removeAll(p); err != nil {
		return err
	}
	if !v.Config.SaveOnStop {
		return nil
	}
	if err := d.withPrecache(ctx, v, p, func() error { return createSparse(p.clean, v.Config.Size) }); err != nil {
		_ = d.removeAll(p)
		return err
	}
	return nil
}

func (d *reflinkDriver) Remove(ctx context.Context, v *Volume) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if err := d.removeAll(p); err != nil {
		return err
	}
	dir := filepath.Dir(p.base)
	if err := os.Remove(dir); err == nil {
		_ = fsyncDir(filepath.Dir(dir))
	}
	return nil
}

func (d *reflinkDriver) Verify(_ context.Context, v *Volume) error {
	var path string
	switch v.Kind() {
	case Snapshot, OriginSnapshot:
		b, err := fileBase(d.dir, v.Config.Source)
		if err != nil {
			return err
		}
		path = b + ".img"
	case Origin:
		path = d.mustPaths(v).clean
	default:
		return nil
	}
	if !exists(path) {
		return fmt.Errorf("Missing image file '%s' for volume %s", path, v.Vid())
	}
	return nil
}

func (d *reflinkDriver) IsDirty(v *Volume) bool {
	return v.Config.SaveOnStop && exists(d.mustPaths(v).dirty)
}

func (d *reflinkDriver) Start(ctx context.Context, v *Volume) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if err := d.removeTemps(p); err != nil {
		return err
	}
	if v.SnapshotsDisabled() {
		for _, r := range d.revisionFiles(p) {
			if err := removeFile(r.path); err != nil {
				return err
			}
		}
		if err := removeFile(p.precache); err != nil {
			return err
		}
		if !d.IsDirty(v) {
			return renameFile(p.clean, p.dirty)
		}
		return nil
	}
	if d.IsDirty(v) {
		return nil // a crash or restart left it: the qube goes on with it
	}
	switch v.Kind() {
	case Snapshot, OriginSnapshot:
		sb, err := fileBase(d.dir, v.Config.Source)
		if err != nil {
			return err
		}
		if err := hardlink(sb+".img", p.clean); err != nil {
			return fmt.Errorf("snapshot of %s: %w", v.Config.Source, err)
		}
		return d.copy(ctx, p.clean, p.dirty, copyOpts{size: -1})
	case Origin:
		if pc, err := os.Stat(p.precache); err == nil {
			cl, cerr := os.Stat(p.clean)
			if cerr != nil || !pc.ModTime().Equal(cl.ModTime()) || pc.Size() != cl.Size() {
				if err := removeFile(p.precache); err != nil {
					return err
				}
				d.st.logf("Removed stale file: '%s'", p.precache)
			} else {
				return renameFile(p.precache, p.dirty)
			}
		}
		return d.copy(ctx, p.clean, p.dirty, copyOpts{size: -1})
	}
	return createSparse(p.dirty, v.Config.Size)
}

func (d *reflinkDriver) Stop(ctx context.Context, v *Volume) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if d.IsDirty(v) {
		if v.SnapshotsDisabled() {
			return renameFile(p.dirty, p.clean)
		}
		return d.commit(ctx, v, p, p.dirty)
	}
	if v.Config.SaveOnStop {
		return nil
	}
	if v.Kind() == Volatile {
		if n, ok := fileSize(p.dirty); ok {
			v.Config.Size = n
		}
	}
	if err := removeFile(p.dirty); err != nil {
		return err
	}
	return removeFile(p.clean)
}

// commit makes from the clean image; the old clean becomes revision N+1
// and revisions beyond revisions_to_keep are pruned (oldest first).
func (d *reflinkDriver) commit(ctx context.Context, v *Volume, p reflinkPaths, from string) error {
	keep := int(v.Config.RevisionsToKeep)
	if keep != 0 && keep != -1 {
		if fi, err := os.Stat(p.clean); err == nil {
			revs := d.revisionFiles(p)
			next := 1
			if len(revs) > 0 {
				next = revs[len(revs)-1].id + 1
			}
			name := fmt.Sprintf("%s.%d@%sZ", p.clean, next, fi.ModTime().UTC().Format(revTimeLayout))
			if err := d.copy(ctx, p.clean, name, copyOpts{size: -1, keepMtime: true}); err != nil {
				return fmt.Errorf("revision of %s: %w", v.Vid(), err)
			}
		}
	}
	if keep < 0 {
		keep = 0
	}
	revs := d.revisionFiles(p)
	for i := 0; i < len(revs)-keep; i++ {
		if err := removeFile(revs[i].path); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(from, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	serr := f.Sync()
	f.Close()
	if serr != nil {
		return serr
	}
	return d.withPrecache(ctx, v, p, func() error { return renameFile(from, p.clean) })
}

func (d *reflinkDriver) Revert(ctx context.Context, v *Volume, rev string) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if d.IsDirty(v) {
		return fmt.Errorf("Cannot revert: %s is not cleanly stopped", v.Vid())
	}
	var target string
	for _, r := range d.revisionFiles(p) {
		if strconv.Itoa(r.id) == rev {
			target = r.path
		}
	}
	if target == "" {
		return fmt.Errorf("Volume %s has no revision %s", v.Vid(), rev)
	}
	if v.Config.RevisionsToKeep != 0 {
		if fi, err := os.Stat(p.clean); err == nil {
			revs := d.revisionFiles(p)
			name := fmt.Sprintf("%s.%d@%sZ", p.clean, revs[len(revs)-1].id+1, fi.ModTime().UTC().Format(revTimeLayout))
			if err := d.copy(ctx, p.clean, name, copyOpts{size: -1, keepMtime: true}); err != nil {
				return err
			}
		}
	}
	return d.withPrecache(ctx, v, p, func() error { return renameFile(target, p.clean) })
}

func (d *reflinkDriver) Resize(ctx context.Context, v *Volume, size int64) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if exists(p.dirty) {
		if err := resizeFile(p.dirty, size); err != nil {
			return err
		}
		updateLoopCapacity(p.dirty)
	} else if v.Kind() == Origin && exists(p.clean) {
		if err := d.withPrecache(ctx, v, p, func() error {
			return d.copy(ctx, p.clean, p.clean, copyOpts{size: size, keepMtime: true})
		}); err != nil {
			return err
		}
	}
	v.Config.Size = size
	return nil
}

func (d *reflinkDriver) Size(v *Volume) int64 {
	p := d.mustPaths(v)
	for _, f := range []string{p.dirty, p.clean} {
		if n, ok := fileSize(f); ok {
			return n
		}
	}
	return v.Config.Size
}

func (d *reflinkDriver) Usage(v *Volume) int64 {
	p := d.mustPaths(v)
	for _, f := range []string{p.dirty, p.clean} {
		if exists(f) {
			return allocated(f)
		}
	}
	return 0
}

func (d *reflinkDriver) IsOutdated(v *Volume) (bool, bool) {
	if !v.Config.SnapOnStart {
		return false, true
	}
	sb, err := fileBase(d.dir, v.Config.Source)
	if err != nil {
		return false, true
	}
	a, err1 := os.Stat(d.mustPaths(v).clean)
	b, err2 := os.Stat(sb + ".img")
	if err1 != nil || err2 != nil {
		return false, true
	}
	return !os.SameFile(a, b), true
}

func (d *reflinkDriver) Path(v *Volume) string        { return d.mustPaths(v).clean }
func (d *reflinkDriver) BlockDevice(v *Volume) string { return d.mustPaths(v).dirty }

func (d *reflinkDriver) Export(_ context.Context, v *Volume) (string, error) {
	if !v.Config.SaveOnStop {
		return "", fmt.Errorf("Cannot export: %s is not save_on_stop", v.Vid())
	}
	p := d.mustPaths(v)
	if v.SnapshotsDisabled() && exists(p.dirty) {
		return "", fmt.Errorf("Volume %s must be stopped before exporting its data", v.Vid())
	}
	return p.clean, nil
}

func (d *reflinkDriver) ImportBegin(_ context.Context, v *Volume, size int64) (string, error) {
	if !v.Config.SaveOnStop {
		return "", fmt.Errorf("Cannot import_data: %s is not save_on_stop", v.Vid())
	}
	p, err := d.paths(v)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p.base), 0o775); err != nil {
		return "", err
	}
	if err := removeFile(p.imp); err != nil {
		return "", err
	}
	return p.imp, createSparse(p.imp, size)
}

func (d *reflinkDriver) ImportEnd(ctx context.Context, v *Volume, ok bool) error {
	p, err := d.paths(v)
	if err != nil {
		return err
	}
	if !ok {
		return removeFile(p.imp)
	}
	if err := d.commit(ctx, v, p, p.imp); err != nil {
		_ = removeFile(p.imp)
		return err
	}
	return nil
}

func (d *reflinkDriver) CloneFrom(ctx context.Context, dst, src *Volume) (bool, error) {
	if !dst.Config.SaveOnStop {
		return true, nil
	}
	from, err := src.drv.Export(ctx, src)
	if err != nil {
		return true, err
	}
	if fi, err := os.Stat(from); err != nil || !fi.Mode().IsRegular() {
		return false, nil // a device: stream it
	}
	p, err := d.paths(dst)
	if err != nil {
		return true, err
	}
	if err := os.MkdirAll(filepath.Dir(p.base), 0o775); err != nil {
		return true, err
	}
	if err := d.copy(ctx, from, p.imp, copyOpts{size: -1}); err != nil {
		_ = removeFile(p.imp)
		return true, fmt.Errorf("copy of %s: %w", src.Vid(), err)
	}
	return true, d.ImportEnd(ctx, dst, true)
}
