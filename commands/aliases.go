package commands

import (
	"sort"
)

// aliases maps argv[0] names of the stock tools to qvm verbs, so existing
// scripts keep working through symlinks.
var aliases = map[string][]string{
	"qvm-create":         {"create"},
	"qvm-clone":          {"clone"},
	"qvm-remove":         {"remove"},
	"qvm-ls":             {"ls"},
	"qvm-prefs":          {"prefs"},
	"qubes-prefs":        {"prefs", "--global"},
	"qvm-features":       {"features"},
	"qvm-service":        {"service"},
	"qvm-tags":           {"tags"},
	"qvm-check":          {"check"},
	"qvm-pool":           {"pool"},
	"qvm-firewall":       {"firewall"},
	"qvm-volume":         {"volume"},
	"qvm-backup":         {"backup"},
	"qvm-backup-restore": {"restore"},
	"qvm-device":         {"device"},
	"qvm-pci":            {"device", "pci"},
	"qvm-block":          {"device", "block"},
	"qvm-usb":            {"device", "usb"},
	"qvm-start":          {"start"},
	"qvm-shutdown":       {"shutdown"},
	"qvm-kill":           {"kill"},
	"qvm-pause":          {"pause"},
	"qvm-unpause":        {"unpause"},
}

func aliasVerb(base string) ([]string, bool) {
	v, ok := aliases[base]
	return append([]string(nil), v...), ok
}

// progFor is the name errors carry: the alias the user typed, or "qvm verb".
func (env *Env) progFor(path string) string {
	if env.Prog != "" {
		return env.Prog
	}
	return path
}

// AliasNames lists the argv[0] names (for make install and tests).
func AliasNames() []string {
	out := make([]string, 0, len(aliases))
	for k := range aliases {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
