package store

import (
	"os"
	"path/filepath"

	"github.com/qvm-dev/qvm/core"
)

// Orphans lists files in the state directory that no qube accounts for:
// temp files of interrupted writes and qube directories without a qube.
func (s *Store) Orphans(app *core.App) []core.Finding {
	var out []core.Finding
	add := func(path, msg string) {
		out = append(out, core.Finding{Kind: "orphan", What: path, Msg: msg})
	}
	xml := s.XMLPath()
	if tmps, _ := filepath.Glob(xml + "~*"); len(tmps) > 0 {
		for _, t := range tmps {
			add(t, "temp file of an interrupted qubes.xml write")
		}
	}
	owner := map[string]string{} // dir -> expected class
	for _, d := range app.Domains() {
		if d.IsQubesVM() {
			owner[app.VMDir(d)] = d.Class
		}
	}
	for _, prefix := range []string{"appvms", "vm-templates"} {
		ents, err := os.ReadDir(filepath.Join(s.Dir, prefix))
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(s.Dir, prefix, e.Name())
			if !e.IsDir() {
				add(p, "file where only qube directories belong")
				continue
			}
			if _, ok := owner[p]; !ok {
				add(p, "directory of no qube (qube "+e.Name()+" does not exist)")
			}
		}
	}
	return out
}
