package storage

import (
	"context"
	"strings"
	"testing"
)

// TestHostileIDs: volume ids from a crafted qubes.xml cannot point outside
// their pool, and relative pool directories are refused.
func TestHostileIDs(t *testing.T) {
	ctx := context.Background()
	ts := newTestState(t, t.TempDir(), "file-reflink")
	for _, vid := range []string{"appvms/../../../tmp/x", "/etc/passwd", "appvms/work", "other/work/private", "appvms/work/private/"} {
		c := ts.work.Volume("private")
		c.Vid = vid
		v := ts.vol(ts.work, "private")
		if err := v.drv.Create(ctx, v); err == nil || !strings.Contains(err.Error(), "invalid volume id") {
			t.Errorf("create with vid %q: %v", vid, err)
		}
		if err := v.Start(ctx); err == nil {
			t.Errorf("start with vid %q accepted", vid)
		}
	}
	ts.work.Volume("private").Vid = "appvms/work/private"
	ts.work.Volume("root").Source = "vm-templates/../../x"
	if err := ts.vol(ts.work, "root").Verify(ctx); err == nil || !strings.Contains(err.Error(), "invalid volume id") {
		t.Errorf("verify with a crafted source: %v", err)
	}
	ts.app.Pool("varlibqubes").Set("dir_path", "relative/dir")
	st := Open(ts.app, Options{})
	if _, err := st.Volume(ts.work, "private"); err == nil || !strings.Contains(err.Error(), "dir_path must be an absolute path") {
		t.Errorf("relative dir_path: %v", err)
	}
}
