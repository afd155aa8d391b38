package commands

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/qvm-dev/qvm/backup"
	"github.com/qvm-dev/qvm/core"
)

// restoreHome is dom0's home in a backup and where it goes: a new
// directory home-restore-<time> in the local dom0 user's home, holding
// dom0-home/<user>/... as the reference restores it. It is extracted into
// a hidden staging directory beside it and renamed when the whole
// restore has succeeded, so a failed restore leaves nothing behind.
type restoreHome struct {
	src      *core.Domain
	user     string // in the backup
	size     int64
	local    *dom0User
	localErr error // why there is no local user
	mismatch bool
	seen     bool
	staging  string
	sink     *backup.TreeSink
	final    string
}

func planHomeRestore(env *Env, o restoreOptions, d *core.Domain) (*restoreHome, error) {
	path, _ := d.Feature("backup-path")
	user, ok := strings.CutPrefix(path, backup.HomePrefix)
	if !ok || !homeUserName.MatchString(user) || user == "." || user == ".." {
		return nil, fmt.Errorf("qubes.xml in the backup: dom0 has an invalid backup-path %q (want dom0-home/USER)", path)
	}
	h := &restoreHome{src: d, user: user}
	if s, ok := d.Feature("backup-size"); ok {
		fmt.Sscan(s, &h.size)
	}
	if o.verifyOnly {
		return h, nil // only read and checked: no local user needed
	}
	h.local, h.localErr = env.dom0User()
	if h.local != nil && h.local.Name != user && !o.ignoreUsernameMismatch {
		h.mismatch = true
	}
	return h, nil
}

// handleHome prints the stock warnings about dom0's home and refuses a
// user name mismatch unless it is to be ignored.
func handleHome(env *Env, prog string, o restoreOptions, h *restoreHome) error {
	if h == nil || o.verifyOnly {
		return nil
	}
	say := func(s string) { fmt.Fprintln(env.IO.Err, s) }
	if h.localErr != nil {
		return &ExitError{Code: 1, Msg: fmt.Sprintf("cannot restore dom0's home directory: %v\nSkip restoring it (--skip-dom0-home), or name the dom0 user with QVM_DOM0_USER.", h.localErr)}
	}
	if h.local.Name != h.user {
		say("*** Dom0 username mismatch! This can break some settings! ***")
		if !o.ignoreUsernameMismatch {
			return &ExitError{Code: 1, Msg: "Skip restoring the dom0 home directory (--skip-dom0-home), or pass --ignore-username-mismatch to continue anyway."}
		}
	}
	say(fmt.Sprintf("NOTE: dom0's home from the backup goes into a new directory 'home-restore-<current-time>' in %s; copy or move the files out of it before using them.", h.local.Home))
	return nil
}

// open starts the extraction of the home tree (or, verifying only, lets
// Extract read it through).
func (h *restoreHome) open(ctx context.Context, env *Env, name string, verifyOnly, ignoreSizeLimit bool) (io.WriteCloser, error) {
	if name != backup.HomePrefix+h.user {
		return nil, fmt.Errorf("the archive holds %s, but its qubes.xml says dom0's home is %s%s", name, backup.HomePrefix, h.user)
	}
	h.seen = true
	if verifyOnly {
		return nil, nil
	}
	h.final = filepath.Join(h.local.Home, "home-restore-"+env.Now().Format("2006-01-02-150405"))
	if _, err := os.Lstat(h.final); err == nil {
		return nil, fmt.Errorf("%s already exists; not overwriting it", h.final)
	}
	st, err := os.MkdirTemp(h.local.Home, ".home-restore-")
	if err != nil {
		return nil, fmt.Errorf("dom0 home restore: %w", err)
	}
	h.staging = st
	// backup-size bounds the apparent size of the home's files in our
	// backups; the stock writer's is the disk usage, so a home with big
	// sparse files may need --ignore-size-limit. The slack covers
	// directories and small-file rounding.
	var limit int64
	if !ignoreSizeLimit {
		limit = h.size + 1<<30
	}
	h.sink = backup.NewTreeSink(ctx, st, backup.TreeOptions{
		Prefix: name, UID: h.local.UID, GID: h.local.GID, MaxBytes: limit,
		Warn: func(msg string) { env.warnf(env.progFor("qvm restore"), "dom0 home: %s", msg) },
	})
	return h.sink, nil
}

// commit moves the extracted tree to its final name, owned by the user.
func (h *restoreHome) commit(env *Env) error {
	if h.staging == "" {
		return nil
	}
	if err := os.Chown(h.staging, h.local.UID, h.local.GID); err != nil {
		return fmt.Errorf("dom0 home restore: %w", err)
	}
	// RENAME_NOREPLACE: a directory of that name made meanwhile (even
	// an empty one, which a plain rename replaces) is never touched.
	if err := unix.Renameat2(unix.AT_FDCWD, h.staging, unix.AT_FDCWD, h.final, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("dom0 home restore: %s: %w", h.final, err)
	}
	h.staging = ""
	s := h.sink.Stats
	env.infof(env.progFor("qvm restore"), "dom0's home restored to %s (%d files, %d directories, %d links)", h.final, s.Files, s.Dirs, s.Links)
	return nil
}

// cleanup removes what a failed restore extracted.
func (h *restoreHome) cleanup() {
	if h.staging != "" {
		os.RemoveAll(h.staging)
	}
}
