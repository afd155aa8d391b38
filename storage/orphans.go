package storage

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/qvm-dev/qvm/core"
)

// Orphans lists what interrupted storage work left in the file pools
// (qvm check): qube directories of a pool that no volume of that pool
// uses (the state directory's own qube directories are core/store's to
// report) and, inside used ones, temp files of interrupted copies and
// imports that were never committed. A later start or import removes the
// latter; nothing ever uses them.
func (s *Storage) Orphans() []core.Finding {
	var out []core.Finding
	add := func(path, msg string) {
		out = append(out, core.Finding{Kind: "orphan", What: path, Msg: msg})
	}
	stateDir := filepath.Clean(s.app.StateDir)
	for _, p := range s.app.Pools {
		if p.Driver != "file" && p.Driver != "file-reflink" {
			continue
		}
		dir, err := poolDir(p)
		if err != nil {
			continue
		}
		used := map[string]bool{} // "appvms/NAME"
		for _, d := range s.app.Domains() {
			for _, v := range d.Volumes {
				if v.Pool == p.Name {
					if i := strings.LastIndexByte(v.Vid, '/'); i > 0 {
						used[v.Vid[:i]] = true
					}
				}
			}
		}
		for _, prefix := range []string{"appvms", "vm-templates"} {
			ents, err := os.ReadDir(filepath.Join(dir, prefix))
			if err != nil {
				continue
			}
			for _, e := range ents {
				rel := prefix + "/" + e.Name()
				path := filepath.Join(dir, rel)
				if !e.IsDir() {
					continue
				}
				if !used[rel] {
					if dir != stateDir {
						add(path, "volume directory of no qube in pool "+p.Name)
					}
					continue
				}
				files, _ := os.ReadDir(path)
				for _, f := range files {
					n := f.Name()
					switch {
					case strings.Contains(n, ".img") && strings.Contains(n, "~"):
						add(filepath.Join(path, n), "temp file of an interrupted volume write")
					case strings.HasSuffix(n, "-import.img"):
						add(filepath.Join(path, n), "data of an interrupted import")
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].What < out[j].What })
	return out
}
