package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/internal/failpoint"
)

// lvmDriver is lvm_thin (§7): one thin LV per committed state, -snap for
// the running copy, -import during an import, -SECONDS-back revisions,
// all through the lvm command with LC_ALL=C.UTF-8.
type lvmDriver struct {
	st       *Storage
	p        *core.PoolConfig
	vg, pool string
	cache    map[string]lvInfo
	loaded   time.Time
	// devExists tells whether /dev/VG/LV exists (remove skips missing LVs);
	// tests answer from the fake lvm's state.
	devExists func(path string) bool
}

type lvInfo struct {
	VG, Pool, Name, Attr, Origin string
	Size                         int64
	DataPercent                  float64
}

func newLVMDriver(st *Storage, p *core.PoolConfig) (Driver, error) {
	vg, _ := p.Get("volume_group")
	tp, _ := p.Get("thin_pool")
	if vg == "" || tp == "" {
		return nil, fmt.Errorf("pool %s needs volume_group and thin_pool", p.Name)
	}
	return &lvmDriver{st: st, p: p, vg: vg, pool: tp, devExists: exists}, nil
}

// lvmEnv is the environment every lvm command runs with, so its output
// (and the stderr we filter) is not translated.
var lvmEnv = []string{"LC_ALL=C.UTF-8"}

// run runs "lvm ARGS" (through sudo when not root). Warnings about
// overprovisioning are dropped; other stderr on success is logged.
func (d *lvmDriver) run(ctx context.Context, args ...string) ([]byte, error) {
	name, argv := "lvm", args
	if os.Geteuid() != 0 {
		name, argv = "sudo", append([]string{"lvm"}, args...)
	}
	out, stderr, err := d.st.o.Runner.Run(ctx, lvmEnv, name, argv...)
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(stderr)), "\n") {
		if l != "" && !strings.Contains(l, "exceeds the size of thin pool") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	msg := strings.Join(keep, "\n")
	if err != nil {
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%s", msg)
	}
	if msg != "" {
		d.st.logf("lvm %s: %s", args[0], msg)
	}
	return out, nil
}

// refresh reloads the LV table.
func (d *lvmDriver) refresh(ctx context.Context) error {
	out, err := d.run(ctx, "lvs", "--quiet", "--quiet", "--noheadings", "-o",
		"vg_name,pool_lv,name,lv_size,data_percent,lv_attr,origin,lv_metadata_size,metadata_percent",
		"--units", "b", "--reportformat=json")
	if err != nil {
		return err
	}
	var rep struct {
		Report []struct {
			LV []map[string]string `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return fmt.Errorf("lvs output: %w", err)
	}
	c := map[string]lvInfo{}
	for _, r := range rep.Report {
		for _, lv := range r.LV {
			size, _ := strconv.ParseInt(strings.TrimSuffix(lv["lv_size"], "B"), 10, 64)
			dp, _ := strconv.ParseFloat(lv["data_percent"], 64)
			c[lv["vg_name"]+"/"+lv["lv_name"]] = lvInfo{VG: lv["vg_name"], Pool: lv["pool_lv"], Name: lv["lv_name"],
				Attr: lv["lv_attr"], Origin: lv["origin"], Size: size, DataPercent: dp}
		}
	}
	d.cache, d.loaded = c, d.st.o.Now()
	return nil
}

func (d *lvmDriver) ensure() {
	if d.cache == nil || d.st.o.Now().Sub(d.loaded) > 30*time.Second {
		if err := d.refresh(context.Background()); err != nil {
			// Said once per process; the volumes read as missing meanwhile.
			d.st.logf("pool %s: cannot list its LVs: %v", d.p.Name, err)
			if d.cache == nil {
				d.cache = map[string]lvInfo{}
			}
			d.loaded = d.st.o.Now()
		}
	}
}

func (d *lvmDriver) has(id string) bool {
	d.ensure()
	_, ok := d.cache[id]
	return ok
}

func lvName(id string) string { return id[strings.IndexByte(id, '/')+1:] }

// mapperPath is /dev/mapper/VG-LV with '-' doubled inside the names.
func mapperPath(id string) string {
	return "/dev/mapper/" + strings.ReplaceAll(strings.ReplaceAll(id, "-", "--"), "/", "-")
}

type lvRev struct {
	secs int64
	id   string // full VG/LV
}

// revisionsOf lists vid-SECONDS-back LVs oldest first; names with more
// than one '-' after the prefix belong to another volume (issue 4680).
func (d *lvmDriver) revisionsOf(vid string) []lvRev {
	d.ensure()
	var out []lvRev
	for id := range d.cache {
		rest, ok := strings.CutPrefix(id, vid+"-")
		if !ok || !strings.HasSuffix(rest, "-back") || strings.Count(rest, "-") != 1 {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(rest, "-back"), 10, 64)
		if err != nil {
			continue
		}
		out = append(out, lvRev{n, id})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].secs < out[j].secs })
	return out
}

// current is the LV holding vid's committed state.
func (d *lvmDriver) current(vid string) string {
	if d.has(vid) {
		return vid
	}
	if r := d.revisionsOf(vid); len(r) > 0 {
		return r[len(r)-1].id
	}
	return vid
}

func (d *lvmDriver) checkVid(v *Volume) error {
	vid := v.Vid()
	if !strings.HasPrefix(vid, d.vg+"/") || strings.Count(vid, "/") != 1 || strings.Contains(vid, "..") {
		return fmt.Errorf("invalid volume id %q for pool %s (want %s/LV)", vid, d.p.Name, d.vg)
	}
	return nil
}

func (d *lvmDriver) create(ctx context.Context, id string, size int64) error {
	_, err := d.run(ctx, "lvcreate", "--thin", "--setactivationskip=n", "--activate=y",
		"--name="+lvName(id), "--virtualsize="+strconv.FormatInt(size, 10)+"B", "--", d.vg+"/"+d.pool)
	return err
}

func (d *lvmDriver) clone(ctx context.Context, origin, id string) error {
	_, err := d.run(ctx, "lvcreate", "--setactivationskip=n", "--activate=y", "--snapshot", "--type=thin",
		"--name="+lvName(id), "--", origin)
	return err
}

func (d *lvmDriver) rename(ctx context.Context, from, to string) error {
	_, err := d.run(ctx, "lvrename", "--", from, to)
	return err
}

func (d *lvmDriver) remove(ctx context.Context, id string) error {
	if strings.HasPrefix(id, "/") || !strings.Contains(id, "/") {
		return fmt.Errorf("refusing to remove %q: not VG/LV", id)
	}
	if !d.devExists("/dev/" + id) {
		return nil
	}
	_, _, _ = d.st.o.Runner.Run(ctx, lvmEnv, "blkdiscard", "-p", "1G", "/dev/"+id)
	_, err := d.run(ctx, "lvremove", "--force", "--", id)
	return err
}

// commit makes x the committed state: the old one is renamed to a
// revision first, so an interruption always leaves a current or a backup
// LV; pruning comes last.
func (d *lvmDriver) commit(ctx context.Context, v *Volume, x string, keepX bool) error {
	vid := v.Vid()
	if !d.has(x) {
		return nil
	}
	if d.has(vid) {
		secs := d.st.o.Now().Unix()
		for d.has(fmt.Sprintf("%s-%d-back", vid, secs)) {
			secs++
		}
		if err := d.rename(ctx, vid, fmt.Sprintf("%s-%d-back", vid, secs)); err != nil {
			return err
		}
	}
	if err := failpoint.Hit(FailpointCommit); err != nil {
		return err
	}
	var err error
	if keepX {
		err = d.clone(ctx, x, vid)
	} else {
		err = d.rename(ctx, x, vid)
	}
	if err != nil {
		return err
	}
	if err := d.refresh(ctx); err != nil {
		return err
	}
	if !d.has(vid) {
		return fmt.Errorf("commit of %s: the committed LV is missing", vid)
	}
	keep := int(v.Config.RevisionsToKeep)
	if keep < 0 {
		keep = 0
	}
	revs := d.revisionsOf(vid)
	for i := 0; i < len(revs)-keep; i++ {
		if err := d.remove(ctx, revs[i].id); err != nil {
			return err
		}
	}
	return d.refresh(ctx)
}

func (d *lvmDriver) Create(ctx context.Context, v *Volume) error {
	if err := d.checkVid(v); err != nil {
		return err
	}
	if v.Kind() == OriginSnapshot {
		return fmt.Errorf("unsupported configuration: snap_on_start and save_on_stop on %s", v.Vid())
	}
	if v.Kind() != Origin {
		return nil
	}
	if err := d.create(ctx, v.Vid(), v.Config.Size); err != nil {
		return err
	}
	return d.refresh(ctx)
}

func (d *lvmDriver) Remove(ctx context.Context, v *Volume) error {
	if err := d.checkVid(v); err != nil {
		return err
	}
	vid := v.Vid()
	ids := []string{vid + "-snap", vid + "-import"}
	for _, r := range d.revisionsOf(vid) {
		ids = append(ids, r.id)
	}
	ids = append(ids, vid)
	for _, id := range ids {
		if d.has(id) {
			if err := d.remove(ctx, id); err != nil {
				return err
			}
		}
	}
	return d.refresh(ctx)
}

func (d *lvmDriver) Verify(_ context.Context, v *Volume) error {
	var id string
	switch v.Kind() {
	case Origin:
		id = d.current(v.Vid())
	case Snapshot, OriginSnapshot:
		id = d.current(v.Config.Source)
	default:
		return nil
	}
	if !d.has(id) {
		return fmt.Errorf("volume %s missing", id)
	}
	return nil
}

func (d *lvmDriver) Start(ctx context.Context, v *Volume) error {
	if err := d.checkVid(v); err != nil {
		return err
	}
	vid := v.Vid()
	if d.has(vid + "-import") {
		return fmt.Errorf("Import operation in progress on %s", vid)
	}
	switch v.Kind() {
	case Volatile:
		if err := d.remove(ctx, vid); err != nil {
			return err
		}
		if err := d.create(ctx, vid, v.Config.Size); err != nil {
			return err
		}
	case Origin, Snapshot:
		if v.Kind() == Snapshot || !d.IsDirty(v) {
			if v.SnapshotsDisabled() {
				for _, r := range d.revisionsOf(vid) {
					if err := d.remove(ctx, r.id); err != nil {
						return err
					}
				}
				return d.refresh(ctx)
			}
			if d.has(vid + "-snap") {
				if err := d.remove(ctx, vid+"-snap"); err != nil {
					return err
				}
			}
			from := d.current(vid)
			if v.Kind() == Snapshot {
				from = d.current(v.Config.Source)
			}
			if err := d.clone(ctx, from, vid+"-snap"); err != nil {
				return err
			}
		} else if _, err := d.run(ctx, "lvchange", "--activate=y", "--", d.current(vid)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported configuration: snap_on_start and save_on_stop on %s", vid)
	}
	return d.refresh(ctx)
}

func (d *lvmDriver) Stop(ctx context.Context, v *Volume) error {
	if err := d.checkVid(v); err != nil {
		return err
	}
	vid := v.Vid()
	switch v.Kind() {
	case Origin:
		if v.SnapshotsDisabled() {
			return nil
		}
		return d.commit(ctx, v, vid+"-snap", false)
	case Snapshot:
		if err := d.remove(ctx, vid+"-snap"); err != nil {
			return err
		}
	case Volatile:
		if err := d.remove(ctx, vid); err != nil {
			return err
		}
	}
	return d.refresh(ctx)
}

// discard drops an unused -snap.
func (d *lvmDriver) discard(ctx context.Context, v *Volume) error {
	if err := d.remove(ctx, v.Vid()+"-snap"); err != nil {
		return err
	}
	return d.refresh(ctx)
}

func (d *lvmDriver) Resize(ctx context.Context, v *Volume, size int64) error {
	if err := d.checkVid(v); err != nil {
		return err
	}
	if size == d.Size(v) {
		return nil
	}
	vid := v.Vid()
	var target string
	switch {
	case d.has(vid + "-import"):
		target = vid + "-import"
	case v.Kind() != Volatile && d.has(vid+"-snap"):
		target = vid + "-snap"
	case v.Kind() == Origin && d.has(d.current(vid)):
		target = d.current(vid)
	}
	if target != "" {
		if _, err := d.run(ctx, "lvresize", "--size="+strconv.FormatInt(size, 10)+"B", "--", target); err != nil {
			return err
		}
		if err := d.refresh(ctx); err != nil {
			return err
		}
	}
	v.Config.Size = size
	return nil
}

func (d *lvmDriver) Revert(ctx context.Context, v *Volume, rev string) error {
	vid := v.Vid()
	if d.IsDirty(v) {
		return fmt.Errorf("Cannot revert dirty volume %s, stop the qube first", vid)
	}
	if d.has(vid + "-import") {
		return fmt.Errorf("Import operation in progress on %s", vid)
	}
	id := vid + "-" + rev
	if !d.has(id) {
		return fmt.Errorf("Volume %s has no /dev/%s", vid, id)
	}
	if d.has(vid) {
		if err := d.remove(ctx, vid); err != nil {
			return err
		}
	}
	if err := d.clone(ctx, id, vid); err != nil {
		return err
	}
	return d.refresh(ctx)
}

func (d *lvmDriver) Revisions(v *Volume) ([]Revision, error) {
	var out []Revision
	for _, r := range d.revisionsOf(v.Vid()) {
		out = append(out, Revision{ID: strings.TrimPrefix(r.id, v.Vid()+"-"), Time: isoUTC(time.Unix(r.secs, 0))})
	}
	return out, nil
}

func (d *lvmDriver) Size(v *Volume) int64 {
	vid := v.Vid()
	d.ensure()
	if v.Kind() != Volatile {
		if i, ok := d.cache[vid+"-snap"]; ok {
			return i.Size
		}
	}
	if i, ok := d.cache[d.current(vid)]; ok {
		return i.Size
	}
	return v.Config.Size
}

func (d *lvmDriver) Usage(v *Volume) int64 {
	d.ensure()
	i, ok := d.cache[d.current(v.Vid())]
	if !ok {
		return 0
	}
	return int64(float64(i.Size) / 100 * i.DataPercent)
}

func (d *lvmDriver) IsDirty(v *Volume) bool {
	return v.Kind() == Origin && d.has(v.Vid()+"-snap")
}

func (d *lvmDriver) IsOutdated(v *Volume) (bool, bool) {
	if v.Kind() != Snapshot {
		return false, true
	}
	d.ensure()
	s, ok := d.cache[v.Vid()+"-snap"]
	if !ok {
		return false, true
	}
	return s.Origin != lvName(d.current(v.Config.Source)), true
}

func (d *lvmDriver) Path(v *Volume) string { return mapperPath(d.current(v.Vid())) }

func (d *lvmDriver) BlockDevice(v *Volume) string {
	if v.Kind() == Volatile || v.SnapshotsDisabled() {
		return mapperPath(v.Vid())
	}
	return mapperPath(v.Vid() + "-snap")
}

func (d *lvmDriver) Export(ctx context.Context, v *Volume) (string, error) {
	cur := d.current(v.Vid())
	if _, err := d.run(ctx, "lvchange", "--activate=y", "--", cur); err != nil {
		return "", err
	}
	return mapperPath(cur), nil
}

func (d *lvmDriver) ImportBegin(ctx context.Context, v *Volume, size int64) (string, error) {
	vid := v.Vid()
	if err := d.checkVid(v); err != nil {
		return "", err
	}
	if d.IsDirty(v) {
		return "", fmt.Errorf("Cannot import data to dirty volume %s, stop the qube first", vid)
	}
	if d.has(vid + "-import") {
		return "", fmt.Errorf("Import operation in progress on %s", vid)
	}
	if err := d.create(ctx, vid+"-import", size); err != nil {
		return "", err
	}
	return "/dev/" + vid + "-import", d.refresh(ctx)
}

func (d *lvmDriver) ImportEnd(ctx context.Context, v *Volume, ok bool) error {
	imp := v.Vid() + "-import"
	if !d.has(imp) {
		return fmt.Errorf("No import operation in progress on %s", v.Vid())
	}
	if ok {
		return d.commit(ctx, v, imp, false)
	}
	if err := d.remove(ctx, imp); err != nil {
		return err
	}
	return d.refresh(ctx)
}

func (d *lvmDriver) CloneFrom(ctx context.Context, dst, src *Volume) (bool, error) {
	if !src.Config.SaveOnStop || !dst.Config.SaveOnStop {
		return true, nil
	}
	vid := dst.Vid()
	if d.IsDirty(dst) {
		return true, fmt.Errorf("Cannot import to dirty volume %s - start and stop a qube to cleanup", vid)
	}
	if d.has(vid + "-import") {
		return true, fmt.Errorf("Import operation in progress on %s", vid)
	}
	if sd, ok := src.drv.(*lvmDriver); ok && sd.vg == d.vg && sd.pool == d.pool {
		return true, d.commit(ctx, dst, sd.current(src.Vid()), true)
	}
	return false, nil
}

// lvmSetup checks the pool's thin pool exists (§7.1 setup).
func lvmSetup(ctx context.Context, st *Storage, p *core.PoolConfig) error {
	drv, err := newLVMDriver(st, p)
	if err != nil {
		return err
	}
	d := drv.(*lvmDriver)
	if err := d.refresh(ctx); err != nil {
		return err
	}
	i, ok := d.cache[d.vg+"/"+d.pool]
	if !ok {
		return fmt.Errorf("Thin pool %s/%s does not exist", d.vg, d.pool)
	}
	if !strings.HasPrefix(i.Attr, "t") {
		return fmt.Errorf("Volume %s/%s is not a thin pool", d.vg, d.pool)
	}
	return nil
}
