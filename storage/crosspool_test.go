package storage

import (
	"context"
	"testing"

	"github.com/qvm-dev/qvm/core"
)

// TestCrossPoolClone: clones between a file-reflink pool on btrfs and
// pools on ext4 (file-reflink without reflinks, and the file driver) copy
// the data (FICLONE fails with EXDEV, the cp fallback runs) and end with
// the source's size; the streamed path (Export then Import) gives the same.
func TestCrossPoolClone(t *testing.T) {
	ctx := context.Background()
	btr, e4 := loopFS(t, "btrfs"), loopFS(t, "ext4")
	ts := newTestState(t, btr, "file-reflink")
	for _, p := range []struct{ name, driver, dir string }{{"ext", "file-reflink", e4 + "/rl"}, {"old", "file", e4 + "/file"}} {
		opts := []core.Opt{{Key: "dir_path", Value: p.dir}}
		if p.driver == "file-reflink" {
			opts = append(opts, core.Opt{Key: "setup_check", Value: "False"})
		}
		pc, err := ts.app.AddPool(p.name, p.driver, opts)
		must(t, err)
		must(t, Setup(ctx, pc, Options{}))
	}
	writeAt(t, ts.path("appvms/work/private.img"), 3*mib, "payload")
	want := hashFile(t, ts.path("appvms/work/private.img"))
	for _, pool := range []string{"ext", "old"} {
		d := ts.create(core.CreateOpts{Class: "AppVM", Name: "c-" + pool, Label: "red", Template: "tpl", Volumes: core.VolumeOpts{Pool: pool}})
		d.Volume("private").Size = 1 * mib
		must(t, ts.st.Clone(ctx, ts.work, d))
		v := ts.vol(d, "private")
		if got := hashFile(t, v.Path()); got != want {
			t.Errorf("%s: hash %s, want %s", pool, got, want)
		}
		if d.Volume("private").Size != 4*mib || v.Size() != 4*mib {
			t.Errorf("%s: size %d / %d, want the source's", pool, d.Volume("private").Size, v.Size())
		}
		if sharedExtents(t, v.Path()) {
			t.Errorf("%s: a copy across filesystems shares extents", pool)
		}
		// And back, streamed through Export/Import.
		exp, err := v.Export(ctx)
		must(t, err)
		back := ts.vol(ts.tpl, "private")
		must(t, back.Import(ctx, exp.Open(), exp.Size))
		exp.Close()
		if got := hashFile(t, back.Path()); got != want {
			t.Errorf("%s: streamed back, hash %s", pool, got)
		}
	}
	// Extents of a sparse image list only the data.
	exp, err := ts.vol(ts.work, "private").Export(ctx)
	must(t, err)
	defer exp.Close()
	ext, err := exp.Extents()
	must(t, err)
	if len(ext) != 1 || ext[0].Offset > 3*mib || ext[0].Offset+ext[0].Length < 3*mib+7 || ext[0].Length > mib {
		t.Errorf("extents %+v", ext)
	}
}
