package commands

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// dom0User is the user whose home a backup of dom0 holds.
type dom0User struct {
	Name, Home string
	UID, GID   int
}

// homeUserName: what the archive name dom0-home/<user> allows.
var homeUserName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// dom0User finds dom0's user as the reference does (the first member of
// group qubes), unless the dom0-user setting names one; its home is the
// passwd entry's unless the dom0-home setting says otherwise.
func (env *Env) dom0User() (*dom0User, error) {
	name := env.cfg.GetString("dom0-user")
	if name == "" {
		n, err := firstGroupMember("/etc/group", "qubes")
		if err != nil {
			return nil, err
		}
		if n == "" {
			return nil, fmt.Errorf("no user in group qubes (set QVM_DOM0_USER or dom0-user in qvm.yaml)")
		}
		name = n
	}
	if !homeUserName.MatchString(name) || name == "." || name == ".." {
		return nil, fmt.Errorf("dom0 user %q: not a name a backup can hold", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("dom0 user %s: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("dom0 user %s: non-numeric uid %q or gid %q", name, u.Uid, u.Gid)
	}
	home := env.cfg.GetString("dom0-home")
	if home == "" {
		home = u.HomeDir
	}
	if home == "" || !filepath.IsAbs(home) {
		return nil, fmt.Errorf("dom0 user %s: home directory %q is not an absolute path", name, home)
	}
	return &dom0User{Name: name, Home: filepath.Clean(home), UID: uid, GID: gid}, nil
}

// firstGroupMember reads group's member list from a group(5) file.
func firstGroupMember(path, group string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) != 4 || fields[0] != group {
			continue
		}
		for _, m := range strings.Split(fields[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				return m, nil
			}
		}
		return "", nil
	}
	return "", sc.Err()
}

// insideDir says whether p is dir or below it, symlinks resolved as far
// as they exist.
func insideDir(p, dir string) bool {
	resolve := func(s string) string {
		s, _ = filepath.Abs(s)
		// Resolve the longest existing ancestor; the rest is appended.
		rest := ""
		for {
			if r, err := filepath.EvalSymlinks(s); err == nil {
				return filepath.Join(r, rest)
			}
			parent := filepath.Dir(s)
			if parent == s {
				return filepath.Join(s, rest)
			}
			rest = filepath.Join(filepath.Base(s), rest)
			s = parent
		}
	}
	p, dir = resolve(p), resolve(dir)
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}
