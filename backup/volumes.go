package backup

import (
	"fmt"
	"path/filepath"

	"github.com/qvm-dev/qvm/core"
)

// Volumes says where volume images are read for a backup and where a
// restore puts them. FileLayout is the file and file-reflink layout
// (spec/storage.md §6: <dir_path>/<vid>.img is the last committed image,
// which is what a backup of a running qube must read). It stands in for
// the storage package's Export/Import until that is merged.
type Volumes interface {
	// CommittedImage is the image of the volume's last committed state.
	CommittedImage(pool *core.PoolConfig, vid string) (string, error)
	// ImportTarget is where a restored image is renamed to.
	ImportTarget(pool *core.PoolConfig, vid string) (string, error)
}

// FileLayout implements Volumes for the file and file-reflink drivers.
type FileLayout struct{}

func (FileLayout) path(pool *core.PoolConfig, vid string) (string, error) {
	if pool == nil {
		return "", fmt.Errorf("volume %s: no such pool", vid)
	}
	switch pool.Driver {
	case "file", "file-reflink":
	default:
		return "", fmt.Errorf("volume %s: pool %s uses driver %s; qvm backup reads file and file-reflink pools only (lvm_thin needs device-mapper)", vid, pool.Name, pool.Driver)
	}
	dir, _ := pool.Get("dir_path")
	if dir == "" || vid == "" || filepath.IsAbs(vid) || filepath.Clean(vid) != vid || vid == ".." || len(vid) > 2 && vid[:3] == "../" {
		return "", fmt.Errorf("volume %q of pool %s: bad path", vid, pool.Name)
	}
	return filepath.Join(dir, vid+".img"), nil
}

func (l FileLayout) CommittedImage(pool *core.PoolConfig, vid string) (string, error) {
	return l.path(pool, vid)
}

func (l FileLayout) ImportTarget(pool *core.PoolConfig, vid string) (string, error) {
	return l.path(pool, vid)
}
