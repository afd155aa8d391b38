package commands

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/qvm-dev/qvm/core"
)

// backupProfile is /etc/qubes/backup/<name>.conf, the stock YAML profile
// that lets cron and Salt run a backup unattended.
type backupProfile struct {
	DestinationVM   string    `yaml:"destination_vm"`
	DestinationPath string    `yaml:"destination_path"`
	Include         *[]string `yaml:"include"`
	Exclude         []string  `yaml:"exclude,omitempty"`
	// Compression is true/false or the name of a filter program.
	Compression    any    `yaml:"compression,omitempty"`
	PassphraseText string `yaml:"passphrase_text,omitempty"`
	PassphraseVM   string `yaml:"passphrase_vm,omitempty"`
}

// loadBackupProfile reads and checks a profile with the stock messages.
func loadBackupProfile(dir, name string) (*backupProfile, error) {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return nil, stockErrorf("Invalid backup profile name: '%s'", name)
	}
	path := filepath.Join(dir, name+".conf")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, stockErrorf("Backup profile does not exist: %s", name)
	}
	if err != nil {
		return nil, fmt.Errorf("backup profile %s: %w", path, err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("backup profile %s: %w", path, err)
	}
	for _, k := range []string{"destination_vm", "destination_path", "include"} {
		if _, ok := raw[k]; !ok {
			return nil, stockErrorf("Invalid backup profile - missing '%s'", k)
		}
	}
	var p backupProfile
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("backup profile %s: %w", path, err)
	}
	switch c := p.Compression.(type) {
	case nil, bool:
	case string:
		if c == "" {
			return nil, stockErrorf("Invalid backup profile - empty compression filter")
		}
	default:
		return nil, stockErrorf("Invalid backup profile - compression must be true, false or a filter name")
	}
	if p.PassphraseText == "" && p.PassphraseVM == "" {
		return nil, stockErrorf("Invalid backup profile - you need to specify passphrase_text or passphrase_vm")
	}
	return &p, nil
}

// save writes the profile with the stock key order (sorted keys).
func (p *backupProfile) save(dir, name string) error {
	if strings.Contains(name, "/") {
		return stockErrorf("Invalid backup profile name: '%s'", name)
	}
	data, err := p.yaml()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	// The profile may hold the passphrase: readable by root only.
	return os.WriteFile(filepath.Join(dir, name+".conf"), data, 0o600)
}

func (p *backupProfile) yaml() ([]byte, error) {
	// yaml.v3 keeps struct order; the stock writer sorts keys, which is the
	// field order above except passphrase at the end.
	type ordered struct {
		Compression     any       `yaml:"compression"`
		DestinationPath string    `yaml:"destination_path"`
		DestinationVM   string    `yaml:"destination_vm"`
		Exclude         []string  `yaml:"exclude,omitempty"`
		Include         *[]string `yaml:"include"`
		PassphraseText  string    `yaml:"passphrase_text,omitempty"`
		PassphraseVM    string    `yaml:"passphrase_vm,omitempty"`
	}
	c := p.Compression
	if c == nil {
		c = true
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	enc.CompactSeqIndent() // "- vm1" under its key, as PyYAML writes it
	if err := enc.Encode(ordered{c, p.DestinationPath, p.DestinationVM, p.Exclude, p.Include, p.PassphraseText, p.PassphraseVM}); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// selectForBackup resolves include/exclude lists (names, @tag:X,
// @type:Class; the legacy $ prefix means @) into qubes. No include list
// means every qube with include_in_backups.
func selectForBackup(app *core.App, include *[]string, exclude []string) ([]*core.Domain, []string, error) {
	match := func(d *core.Domain, item string) (bool, error) {
		item = strings.Replace(item, "$", "@", 1)
		switch {
		case strings.HasPrefix(item, "@tag:"):
			return d.Tags[strings.TrimPrefix(item, "@tag:")], nil
		case strings.HasPrefix(item, "@type:"):
			return d.Class == strings.TrimPrefix(item, "@type:"), nil
		case strings.HasPrefix(item, "@"):
			return false, fmt.Errorf("unknown qube selector %q (use a name, @tag:TAG or @type:CLASS)", item)
		}
		return d.Name() == item, nil
	}
	var selected []*core.Domain
	if include == nil {
		for _, d := range app.Domains() {
			if v, err := app.Get(d, "include_in_backups"); err == nil && v.Bool() {
				selected = append(selected, d)
			}
		}
	} else {
		for _, item := range *include {
			found := false
			for _, d := range app.Domains() {
				ok, err := match(d, item)
				if err != nil {
					return nil, nil, err
				}
				if ok {
					found = true
					if !containsDomain(selected, d) {
						selected = append(selected, d)
					}
				}
			}
			if !found && !strings.HasPrefix(item, "@") && !strings.HasPrefix(item, "$") {
				return nil, nil, &UsageError{Msg: (&core.NoSuchQubeError{Name: item}).Error()}
			}
		}
	}
	var out []*core.Domain
	for _, d := range selected {
		drop := false
		for _, item := range exclude {
			ok, err := match(d, item)
			if err != nil {
				return nil, nil, err
			}
			drop = drop || ok
		}
		if !drop {
			out = append(out, d)
		}
	}
	var notSelected []string
	for _, d := range app.Domains() {
		if !containsDomain(out, d) {
			notSelected = append(notSelected, d.Name())
		}
	}
	sort.Strings(notSelected)
	return out, notSelected, nil
}

func containsDomain(list []*core.Domain, d *core.Domain) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}

// summaryRow is one qube of the backup summary.
type summaryRow struct {
	name, kind string
	size       int64
	note       string
}

// backupKind is the summary's type column.
func backupKind(app *core.App, d *core.Domain) string {
	switch {
	case d.Class == "AdminVM":
		return "User home"
	case d.Class == "TemplateVM":
		return "Template VM"
	}
	if v, _ := app.Get(d, "updateable"); v.Bool() {
		return "VM + Sys"
	}
	return "VM"
}

// backupSummary lays the table out as the stock tool does: columns 16, 12
// and 12 wide, right-aligned cells, the total in a cell spanning two columns.
func backupSummary(rows []summaryRow, notSelected []string) string {
	widths := []int{16, 12, 12}
	var b strings.Builder
	sep := func() {
		for _, w := range widths {
			b.WriteString(strings.Repeat("-", w+2) + "+")
		}
		b.WriteByte('\n')
	}
	row := func(cells ...string) {
		for i, c := range cells {
			fmt.Fprintf(&b, "%*s |", widths[i]+1, c)
		}
	}
	sep()
	row("VM", "type", "size")
	b.WriteByte('\n')
	sep()
	var total int64
	for _, r := range rows {
		row(r.name, r.kind, humanBytes(r.size))
		b.WriteString(r.note + "\n")
		total += r.size
	}
	sep()
	fmt.Fprintf(&b, "%*s |%*s |\n", widths[0]+1, "Total size:", widths[1]+1+2+widths[2]+1, humanBytes(total))
	sep()
	if len(notSelected) > 0 {
		b.WriteString("VMs not selected for backup:\n")
		for _, n := range notSelected {
			b.WriteString(" - " + n + "\n")
		}
	}
	return b.String()
}

// stockErrorf keeps the stock tool's capitalised messages.
func stockErrorf(format string, args ...any) error {
	return &core.ValueError{Msg: fmt.Sprintf(format, args...)}
}
