package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/qvm-dev/qvm/core"
)

// Options configure a Storage; the zero value is the real system.
type Options struct {
	// RunDir holds the volume-running-* markers (default /var/run/qubes).
	RunDir string
	// Runner runs external commands (lvm, cp, cryptsetup, dmsetup); nil runs them.
	Runner Runner
	// Now is the clock for revision names (default time.Now).
	Now func() time.Time
	// Log receives warnings (stale files removed, failed cleanups).
	Log func(msg string)
}

// Runner runs a command with extra environment entries and returns its
// output; a non-zero exit is an *exec.ExitError.
type Runner interface {
	Run(ctx context.Context, env []string, name string, args ...string) (stdout, stderr []byte, err error)
}

// ExecRunner runs commands for real.
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, env []string, name string, args ...string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}

// Storage is the storage side of one loaded state.
type Storage struct {
	app     *core.App
	o       Options
	drivers map[string]Driver
	// hasDM and dmExists answer for device-mapper; tests replace them.
	hasDM    func() bool
	dmExists func(name string) bool
}

// Open wraps a loaded state. Drivers are made on first use.
func Open(app *core.App, o Options) *Storage {
	if o.RunDir == "" {
		o.RunDir = "/var/run/qubes"
	}
	if o.Runner == nil {
		o.Runner = ExecRunner{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = func(string) {}
	}
	return &Storage{app: app, o: o, drivers: map[string]Driver{},
		hasDM:    func() bool { return exists("/dev/mapper/control") },
		dmExists: func(name string) bool { return exists("/dev/mapper/" + name) }}
}

func (s *Storage) logf(format string, args ...any) { s.o.Log(fmt.Sprintf(format, args...)) }

// Driver returns the driver of a pool.
func (s *Storage) Driver(poolName string) (Driver, error) {
	if d, ok := s.drivers[poolName]; ok {
		return d, nil
	}
	p := s.app.Pool(poolName)
	if p == nil {
		return nil, fmt.Errorf("No such storage pool: %s", poolName)
	}
	d, err := newDriver(s, p)
	if err != nil {
		return nil, err
	}
	s.drivers[poolName] = d
	return d, nil
}

// Volume returns one volume of a qube.
func (s *Storage) Volume(d *core.Domain, name string) (*Volume, error) {
	c := d.Volume(name)
	if c == nil {
		return nil, fmt.Errorf("vm '%s' has no volume '%s'", d.Name(), name)
	}
	return s.volume(d, c, 0)
}

// Volumes returns a qube's volumes in config order.
func (s *Storage) Volumes(d *core.Domain) ([]*Volume, error) {
	var out []*Volume
	for _, c := range d.Volumes {
		v, err := s.volume(d, c, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Storage) volume(d *core.Domain, c *core.VolumeConfig, depth int) (*Volume, error) {
	drv, err := s.Driver(c.Pool)
	if err != nil {
		return nil, fmt.Errorf("volume %s of %s: %w", c.Name, d.Name(), err)
	}
	p := s.app.Pool(c.Pool)
	v := &Volume{Domain: d, Config: c, Pool: p, st: s, drv: drv, vid: c.Vid}
	if p.Driver == "linux-kernel" {
		k, err := s.app.Get(d, "kernel")
		v.vid = k.S
		if err != nil || k.None {
			v.vid = ""
		}
	}
	if c.Source != "" && depth < 16 {
		if sd, sc := s.findVolume(d, c); sc != nil {
			src, err := s.volume(sd, sc, depth+1)
			if err != nil {
				return nil, err
			}
			v.Source = src
		}
	}
	return v, nil
}

// findVolume finds the volume a snapshot volume's source vid names: in the
// template chain first (the usual case), else in any qube of the pool.
func (s *Storage) findVolume(d *core.Domain, c *core.VolumeConfig) (*core.Domain, *core.VolumeConfig) {
	match := func(o *core.Domain) *core.VolumeConfig {
		for _, oc := range o.Volumes {
			if oc.Vid == c.Source && oc.Pool == c.Pool && oc != c {
				return oc
			}
		}
		return nil
	}
	for t, n := d, 0; n < 16; n++ {
		tv, err := s.app.Get(t, "template")
		if err != nil || tv.None {
			break
		}
		next, err := s.app.Domain(tv.S)
		if err != nil {
			break
		}
		if oc := match(next); oc != nil {
			return next, oc
		}
		t = next
	}
	for _, o := range s.app.Domains() {
		if oc := match(o); oc != nil {
			return o, oc
		}
	}
	return nil, nil
}

// markerPath is /var/run/qubes/volume-running-<pool>:<vid> with '-'
// doubled and '/' turned into '-'.
func (s *Storage) markerPath(v *Volume) string {
	x := strings.ReplaceAll(v.Config.Pool+":"+v.vid, "-", "--")
	x = strings.ReplaceAll(x, "/", "-")
	return filepath.Join(s.o.RunDir, "volume-running-"+x)
}

// vmDir is the qube's directory; a name that could leave the state
// directory (a crafted qubes.xml) is refused before anything is touched.
func (s *Storage) vmDir(d *core.Domain) (string, error) {
	if err := core.ValidateName(d.Name()); err != nil {
		return "", fmt.Errorf("refusing the directory of qube %q: %w", d.Name(), err)
	}
	return s.app.VMDir(d), nil
}

// Verify checks a qube can start: its directory and every volume's data.
func (s *Storage) Verify(ctx context.Context, d *core.Domain) error {
	dir, err := s.vmDir(d)
	if err != nil {
		return err
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("VM directory does not exist: %s", dir)
	}
	vols, err := s.Volumes(d)
	if err != nil {
		return err
	}
	for _, v := range vols {
		if err := v.Verify(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Start starts every volume of a qube and writes the running markers. On
// failure the volumes already started are stopped again.
func (s *Storage) Start(ctx context.Context, d *core.Domain) error {
	vols, err := s.Volumes(d)
	if err != nil {
		return err
	}
	for _, v := range vols {
		if v.Source != nil && v.Source.SnapshotsDisabled() && v.Source.Running() {
			return fmt.Errorf("Volume %s is running", v.Source.Vid())
		}
	}
	if err := os.MkdirAll(s.o.RunDir, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	var started []*Volume
	for _, v := range vols {
		var err error
		if v.Ephemeral() {
			err = s.startEncrypted(ctx, v)
		} else {
			err = v.Start(ctx)
		}
		if err != nil {
			for _, u := range started {
				if serr := s.stopOne(ctx, u); serr != nil {
					s.logf("stop of %s after a failed start: %v", u.Vid(), serr)
				}
			}
			return err
		}
		started = append(started, v)
	}
	for _, v := range vols {
		if err := os.WriteFile(s.markerPath(v), nil, 0o644); err != nil {
			return fmt.Errorf("running marker of %s: %w", v.Vid(), err)
		}
	}
	return nil
}

// Stop stops every volume (commit or discard) and removes the running
// markers. Every volume is tried; the errors are joined.
func (s *Storage) Stop(ctx context.Context, d *core.Domain) error {
	vols, err := s.Volumes(d)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vols {
		if err := s.stopOne(ctx, v); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.Vid(), err))
		}
		if err := os.Remove(s.markerPath(v)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Storage) stopOne(ctx context.Context, v *Volume) error {
	if v.Ephemeral() {
		s.closeCrypt(ctx, v)
	}
	return v.Stop(ctx)
}

// startEncrypted maps a volatile volume through dm-crypt with a throw-away
// key (§3.3) so its data is unreadable after the qube stops.
func (s *Storage) startEncrypted(ctx context.Context, v *Volume) error {
	s.closeCrypt(ctx, v)
	if err := v.Start(ctx); err != nil {
		return err
	}
	if !s.hasDM() {
		return fmt.Errorf("ephemeral volume %s needs device-mapper (/dev/mapper is missing)", v.Vid())
	}
	name := v.cryptName()
	if _, stderr, err := s.o.Runner.Run(ctx, nil, "cryptsetup", "--key-file=/dev/urandom", "--cipher=aes-xts-plain64",
		"--type=plain", "--", "open", v.drv.BlockDevice(v), name); err != nil {
		return fmt.Errorf("cryptsetup open %s: %s", name, strings.TrimSpace(string(stderr)))
	}
	f, err := os.OpenFile("/dev/mapper/"+name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(make([]byte, 65536))
	return err
}

func (s *Storage) closeCrypt(ctx context.Context, v *Volume) {
	name := v.cryptName()
	if _, err := os.Stat("/dev/mapper/" + name); err == nil {
		if _, stderr, err := s.o.Runner.Run(ctx, nil, "cryptsetup", "close", name); err != nil {
			s.logf("cryptsetup close %s: %s", name, strings.TrimSpace(string(stderr)))
		}
	}
}

// Create makes a new qube's directory (0775) and volumes. On failure
// everything made is removed again.
func (s *Storage) Create(ctx context.Context, d *core.Domain) error {
	dir, err := s.vmDir(d)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(dir)
	madeDir := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o775); err != nil {
		return fmt.Errorf("VM directory: %w", err)
	}
	_ = os.Chmod(dir, 0o775)
	var vols []*Volume
	vols, err = s.Volumes(d)
	if err == nil {
		var made []*Volume
		for _, v := range vols {
			if err = v.drv.Create(ctx, v); err != nil {
				// The failing driver cleans up after itself; what it refused
				// (an existing image) is not ours to delete.
				err = fmt.Errorf("volume %s: %w", v.Name(), err)
				break
			}
			made = append(made, v)
		}
		if err != nil {
			for _, v := range made {
				if rerr := v.drv.Remove(ctx, v); rerr != nil {
					s.logf("cleanup of %s: %v", v.Vid(), rerr)
				}
			}
		}
	}
	if err != nil && madeDir {
		_ = os.RemoveAll(dir)
		_ = fsyncDir(filepath.Dir(dir))
	}
	return err
}

// Remove stops and deletes every volume of a qube and its directory.
// Errors are logged, as the reference does, and the first one returned.
func (s *Storage) Remove(ctx context.Context, d *core.Domain) error {
	dir, err := s.vmDir(d)
	if err != nil {
		return err
	}
	vols, err := s.Volumes(d)
	if err != nil {
		return err
	}
	var first error
	for _, v := range vols {
		if v.Running() {
			if err := s.stopOne(ctx, v); err != nil {
				s.logf("stop of %s: %v", v.Vid(), err)
			}
			_ = os.Remove(s.markerPath(v))
		}
		if err := v.drv.Remove(ctx, v); err != nil {
			s.logf("remove of %s: %v", v.Vid(), err)
			if first == nil {
				first = err
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil && first == nil {
		first = err
	}
	_ = fsyncDir(filepath.Dir(dir))
	return first
}

// Clone copies the data of every save_on_stop volume of dst from src's
// volume of the same name (qvm clone). dst's volumes must exist (Create).
func (s *Storage) Clone(ctx context.Context, src, dst *core.Domain) error {
	for _, dc := range dst.Volumes {
		sc := src.Volume(dc.Name)
		if !dc.SaveOnStop || sc == nil {
			continue
		}
		dv, err := s.volume(dst, dc, 0)
		if err != nil {
			return err
		}
		sv, err := s.volume(src, sc, 0)
		if err != nil {
			return err
		}
		if err := s.CloneVolume(ctx, dv, sv); err != nil {
			return err
		}
	}
	return nil
}

// CloneVolume replaces dst's data by src's committed data: the fast way
// when the pools allow (reflink, thin snapshot), else streamed. dst ends
// with src's size.
func (s *Storage) CloneVolume(ctx context.Context, dst, src *Volume) error {
	if src.Running() && src.SnapshotsDisabled() {
		return fmt.Errorf("Volume %s must be stopped before importing its data", src.Vid())
	}
	if !dst.Config.SaveOnStop {
		return nil
	}
	handled, err := dst.drv.CloneFrom(ctx, dst, src)
	if err != nil {
		return err
	}
	if !handled {
		exp, err := src.Export(ctx)
		if err != nil {
			return err
		}
		defer exp.Close()
		if err := dst.Import(ctx, exp.Open(), exp.Size); err != nil {
			return err
		}
	}
	dst.Config.Size = src.Size()
	return nil
}
