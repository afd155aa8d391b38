package core

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// DriverParam is one option a pool driver takes.
type DriverParam struct {
	Name     string
	Required bool
}

// driverParams are the options of each driver, in constructor order.
var driverParams = map[string][]DriverParam{
	"file":         {{"revisions_to_keep", false}, {"dir_path", true}, {"ephemeral_volatile", false}},
	"file-reflink": {{"revisions_to_keep", false}, {"dir_path", true}, {"setup_check", false}, {"ephemeral_volatile", false}},
	"lvm_thin":     {{"revisions_to_keep", false}, {"volume_group", true}, {"thin_pool", true}, {"ephemeral_volatile", false}},
	"linux-kernel": {{"dir_path", true}},
}

// Drivers lists the pool drivers qvm manages, sorted.
func Drivers() []string {
	out := make([]string, 0, len(driverParams))
	for d := range driverParams {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// DriverParams lists a driver's options (nil for an unknown driver).
func DriverParams(driver string) []DriverParam { return driverParams[driver] }

var rePoolName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// AddPool adds a pool to the state after the reference's checks. The
// caller prepares the storage (directories, reflink check) before saving.
func (a *App) AddPool(name, driver string, opts []Opt) (*PoolConfig, error) {
	if !rePoolName.MatchString(name) {
		return nil, valueErrorf("Invalid pool name: '%s'", name)
	}
	if a.Pool(name) != nil {
		return nil, &InUseError{Msg: sprintf("Storage pool with name '%s' already exists", name)}
	}
	params, ok := driverParams[driver]
	if !ok {
		return nil, valueErrorf("Unknown storage pool driver: '%s' (known: %s)", driver, strings.Join(Drivers(), ", "))
	}
	known := map[string]bool{}
	for _, p := range params {
		known[p.Name] = true
	}
	p := &PoolConfig{Name: name, Driver: driver}
	for _, o := range opts {
		if !known[o.Key] {
			return nil, valueErrorf("Option '%s' is not supported by the %s driver", o.Key, driver)
		}
		if _, dup := p.Get(o.Key); dup {
			return nil, valueErrorf("Option '%s' given twice", o.Key)
		}
		p.Opts = append(p.Opts, o)
	}
	var missing []string
	for _, prm := range params {
		if _, ok := p.Get(prm.Name); prm.Required && !ok {
			missing = append(missing, prm.Name)
		}
	}
	if len(missing) > 0 {
		return nil, valueErrorf("missing required driver options: %s", strings.Join(missing, ", "))
	}
	if v, ok := p.Get("revisions_to_keep"); ok {
		if err := checkPoolRevisions(p, v); err != nil {
			return nil, err
		}
	}
	if v, ok := p.Get("ephemeral_volatile"); ok {
		if _, err := ParseBool(v); err != nil && v != "" {
			return nil, err
		}
	}
	normalizePool(p)
	a.Pools = append(a.Pools, p)
	return p, nil
}

func checkPoolRevisions(p *PoolConfig, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return valueErrorf("Invalid value for revisions_to_keep: '%s'", v)
	}
	switch {
	case n < -1:
		return valueErrorf("Value can't be lower than -1")
	case p.Driver == "file" && n > 1:
		return valueErrorf("FilePool supports maximum 1 volume revision to keep")
	case p.Driver == "linux-kernel" && n != 0:
		return valueErrorf("LinuxModules supports only revisions_to_keep=0")
	}
	return nil
}

// SetPoolOption changes revisions_to_keep or ephemeral_volatile.
func (a *App) SetPoolOption(p *PoolConfig, key, value string) error {
	switch {
	case key == "revisions_to_keep" && p.Driver != "linux-kernel":
		if err := checkPoolRevisions(p, value); err != nil {
			return err
		}
		n, _ := strconv.ParseInt(value, 10, 64)
		p.Set(key, strconv.FormatInt(n, 10))
	case key == "ephemeral_volatile" && p.Driver != "linux-kernel":
		b, err := ParseBool(value)
		if err != nil && value != "" {
			return err
		}
		p.Set(key, boolValue(b).S)
	default:
		return valueErrorf("Setting option %s is not supported for pool %s", key, p.Name)
	}
	return nil
}

// RemovePool removes a pool no volume and no default_pool* property uses.
func (a *App) RemovePool(name string) error {
	p := a.Pool(name)
	if p == nil {
		return valueErrorf("No such pool %s", name)
	}
	for _, prop := range []string{"default_pool", "default_pool_kernel", "default_pool_private", "default_pool_root", "default_pool_volatile"} {
		if v, err := a.Get(nil, prop); err == nil && v.S == name {
			return &InUseError{Msg: sprintf("Storage pool is in use: set as %s", prop)}
		}
	}
	for _, d := range a.Domains() {
		for _, v := range d.Volumes {
			if v.Pool == name {
				return &InUseError{Msg: sprintf("Storage pool is in use: volume %s of %s", v.Name, d.Name())}
			}
		}
	}
	for i, x := range a.Pools {
		if x == p {
			a.Pools = append(a.Pools[:i], a.Pools[i+1:]...)
			break
		}
	}
	return nil
}
