package store

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/gofrs/flock"

	"github.com/qvm-dev/qvm/core"
)

// Leftovers lists what interrupted commands leave in the state directory
// besides Orphans' findings: staging directories of a restore that never
// finished, temp files of interrupted firewall.xml writes inside qube
// directories, and lock files other than qubes.xml's that no process
// holds (a lock file is only stale when nobody has it locked; the ones
// qvm keeps by design, keptLocks, are never reported).
func (s *Store) Leftovers(app *core.App) []core.Finding {
	var out []core.Finding
	add := func(path, msg string) {
		out = append(out, core.Finding{Kind: "orphan", What: path, Msg: msg})
	}
	ents, _ := os.ReadDir(s.Dir)
	for _, e := range ents {
		p := filepath.Join(s.Dir, e.Name())
		switch {
		case e.IsDir() && strings.HasPrefix(e.Name(), ".qvm-restore-"):
			add(p, "staging directory of an interrupted restore")
		case !e.IsDir() && strings.HasSuffix(e.Name(), ".lock") && !keptLocks[e.Name()]:
			if fl := flock.New(p); func() bool { ok, err := fl.TryLock(); return err == nil && ok }() {
				fl.Unlock()
				add(p, "stale lock file (no process holds it)")
			}
		}
	}
	for _, d := range app.Domains() {
		if !d.IsQubesVM() {
			continue
		}
		tmps, _ := filepath.Glob(filepath.Join(app.VMDir(d), "firewall.xml~*"))
		for _, t := range tmps {
			add(t, "temp file of an interrupted firewall.xml write")
		}
	}
	return out
}

// keptLocks are the lock files that stay in the state directory between
// commands: qubes.xml's and the embedded libvirt root's (core/virt locks
// <state>/libvirt.lock).
var keptLocks = map[string]bool{"qubes.xml.lock": true, "libvirt.lock": true}

// RemoveOrphans deletes what findings name as orphan files (temp files,
// staging directories, stale locks, directories of no qube) and returns
// the paths it removed. Inconsistencies are left for the user to fix.
func RemoveOrphans(findings []core.Finding) ([]string, error) {
	var done []string
	for _, f := range findings {
		if f.Kind != "orphan" || !filepath.IsAbs(f.What) {
			continue
		}
		if err := os.RemoveAll(f.What); err != nil {
			return done, err
		}
		done = append(done, f.What)
	}
	return done, nil
}
