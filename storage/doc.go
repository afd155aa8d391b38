// Package storage holds the pool drivers (file-reflink, file, lvm_thin,
// linux-kernel) and the volume lifecycle (create, start, stop, commit,
// revisions, resize, import, export) on real files and devices.
//
// The volume configuration itself (pool, vid, flags, nominal size) lives in
// qubes.xml and is owned by core (core.VolumeConfig); this package acts on
// the data behind it and updates the config's Size where the reference
// does (resize, import, clone). Callers hold the qubes.xml lock
// (core/store Update) around anything that changes volumes, so two qvm
// processes never work on the same volume at once, and save the state
// afterwards.
//
// # API for other parts of qvm
//
//	st := storage.Open(app, storage.Options{})   // app from store.View/Update
//	err := st.Verify(ctx, d)                     // before start: VM dir and data exist
//	err  = st.Start(ctx, d)                      // snapshots, dirty images, running markers;
//	                                             // a failure stops what it started
//	vols, _ := st.Volumes(d)                     // in config order (root, private, volatile, kernel)
//	dev, ok := vols[i].BlockDevice()             // Path, Name, RW for the domain XML (ok=false: none)
//	err  = st.Stop(ctx, d)                       // commit, revisions, volatile removal
//
//	v, _ := st.Volume(d, "private")
//	exp, _ := v.Export(ctx)   // backup: exp.Size, exp.Open() (stable even if v is committed
//	defer exp.Close()         // meanwhile), exp.ReaderAt(), exp.Extents() (data regions)
//	err = v.Import(ctx, r, size)   // restore: exactly size bytes, zero blocks left as holes;
//	                               // old data kept as a revision; v.Config.Size = size
//	v.Resize(ctx, n) / v.Revert(ctx, rev) / v.Clear(ctx) / v.Revisions() / v.Size() / v.Usage()
//
//	st.Create(ctx, d) / st.Remove(ctx, d)       // qvm create / remove (Create cleans up on failure)
//	st.Clone(ctx, src, dst) / st.CloneVolume(ctx, dstVol, srcVol)
//	storage.Setup(ctx, pool, opts)              // qvm pool add: directories, reflink check, thin pool
//	storage.ReflinkSupported(dir)               // qvm init's probe
//	st.Usage(ctx, pool), storage.IncludedIn(app, pool), storage.KernelVersions(pool)
//
// Errors carry the stock messages ("Missing image file '…' for volume …",
// "Cannot revert: … is not cleanly stopped", "not enough data (copied X
// bytes, expected Y bytes)") so commands print them as they are.
//
// Each volume is one of four kinds (snap_on_start × save_on_stop):
// volatile (fresh empty image each start, discarded at stop), snapshot
// (fresh copy of the source's committed state, discarded), origin (own
// state, committed at stop as a new revision) — origin+snapshot is refused.
//
// # Drivers
//
// A Driver implements one pool kind on a core.PoolConfig. The on-disk
// names and command lines follow the reference exactly, so a qvm-managed
// /var/lib/qubes stays usable by the stock tools and the other way round:
//
//   - file-reflink: P.img (clean), P-dirty.img (running), P-precache.img,
//     P-import.img, revisions P.img.N@YYYY-MM-DDTHH:MM:SSZ, temp files
//     TARGET~RANDOM; copies by FICLONE, falling back to cp --sparse=always.
//   - file: P.img, P-cow.img, P-cow.img.old and device-mapper snapshots.
//   - lvm_thin: thin LVs vm-NAME-VOL, -snap, -import, -SECONDS-back through
//     the lvm command (LC_ALL=C.UTF-8); the Runner makes the command lines
//     testable without device-mapper.
//   - linux-kernel: read-only kernel directories DIR/VERSION/.
//
// The package does not decide what a qube's volumes are (core does), does
// not talk to the hypervisor and prints nothing; warnings go to Options.Log.
package storage
