package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/backup"
	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/internal/failpoint"
	"github.com/qvm-dev/qvm/storage"
)

// Durable steps of a restore (see internal/failpoint): a volume's data
// imported into the new qube's volume, and all of them imported just
// before the final qubes.xml update.
const (
	FailpointRestoreImport = "restore.import"
	FailpointRestoreCommit = "restore.commit"
)

type restoreOptions struct {
	verifyOnly, skipBroken, ignoreMissing, skipConflicting, renameConflicting bool
	exclude                                                                   []string
	skipDom0Home, ignoreUsernameMismatch, ignoreSizeLimit                     bool
	filter, passphraseFile, destVM                                            string
	locationIsService, paranoid, autoClose, yes, noProgress                   bool
	maxExpansion                                                              int64
}

func newRestoreCmd(env *Env) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore [flags] BACKUP [VMNAME...]",
		Short: "Restore qubes from a Qubes backup (format 4 or 3)",
		Long: `Restore qubes from a Qubes OS backup file (format 4, or format 3 from
R3.x). Every chunk is authenticated before its data is used; the qubes
are added to qubes.xml only after all their data arrived intact. dom0's
home, when the backup holds it, goes into a new directory
home-restore-<time> in the local dom0 user's home.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("the following arguments are required: backup_location")
			}
			return runRestore(cmd.Context(), env, o, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.verifyOnly, "verify-only", false, "decrypt and verify only, create nothing")
	f.BoolVar(&o.skipBroken, "skip-broken", false, "do not restore qubes whose template or netvm is missing")
	f.BoolVar(&o.ignoreMissing, "ignore-missing", false, "restore them with the default template/netvm")
	f.BoolVar(&o.skipConflicting, "skip-conflicting", false, "skip qubes whose name exists on the host")
	f.BoolVar(&o.renameConflicting, "rename-conflicting", false, "restore them as NAME-N")
	f.StringArrayVarP(&o.exclude, "exclude", "x", nil, "do not restore the qube (name in the backup; repeatable)")
	f.BoolVar(&o.skipDom0Home, "skip-dom0-home", false, "do not restore the dom0 home directory")
	f.BoolVar(&o.ignoreUsernameMismatch, "ignore-username-mismatch", false, "restore dom0 home although user names differ")
	f.BoolVar(&o.ignoreSizeLimit, "ignore-size-limit", false, "accept qubes whose data is larger than the backup says")
	f.Int64Var(&o.maxExpansion, "max-expansion", backup.DefaultMaxExpansion, "refuse an inner archive that decompresses to more than N times its compressed size past 64 MiB (-1: no limit)")
	f.StringVarP(&o.filter, "compression-filter", "Z", "", "decompress with this program instead of the header's")
	f.StringVarP(&o.passphraseFile, "passphrase-file", "p", "", "read the passphrase from the first line of FILE (- for standard input); no confirmation")
	f.StringVarP(&o.destVM, "dest-vm", "d", "", "read the backup from a qube (needs qrexec; refused)")
	f.BoolVar(&o.locationIsService, "location-is-service", false, "BACKUP is a qrexec service (refused)")
	f.BoolVar(&o.paranoid, "paranoid-mode", false, "restore in a DisposableVM (needs qrexec; refused)")
	f.BoolVar(&o.paranoid, "plan-b", false, "same as --paranoid-mode")
	f.BoolVar(&o.autoClose, "auto-close", false, "with --paranoid-mode (refused)")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&o.noProgress, "no-progress", false, "plain progress lines instead of a bar")
	return cmd
}

// restoreItem is one qube of the backup and what happens to it.
type restoreItem struct {
	src      *core.Domain
	name     string // in the backup
	newName  string
	dir      string // vm3/
	size     int64
	template string // on this host, after defaults
	tplNote  string
	problem  string
	excluded bool
	// dropNetvm: the netvm is missing and --ignore-missing resets it
	dropNetvm bool
	index     int // names staged files
	seen      map[string]bool
	// staged files: archive file name (private.img, firewall.xml) -> path
	staged map[string]string
}

func (it *restoreItem) good() bool { return it.problem == "" && !it.excluded }

func runRestore(ctx context.Context, env *Env, o restoreOptions, location string, names []string) error {
	// Ctrl-C or a TERM cancels the run; the partial file or the staged
	// data is removed on the way out.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case o.destVM != "":
		return usagef("--dest-vm needs the qrexec qubes.Restore service, which qvm does not have; copy the backup file to dom0 first")
	case o.locationIsService:
		return usagef("--location-is-service option requires -d (and qrexec, which qvm does not have)")
	case o.paranoid || o.autoClose:
		return usagef("--paranoid-mode needs a DisposableVM and qrexec, which qvm does not have")
	}
	prog := env.progFor("qvm restore")
	if location == "-" && o.passphraseFile == "-" {
		return usagef("the backup and the passphrase can not both come from standard input")
	}
	pass, err := readPassphrase(env, passphraseSource{file: o.passphraseFile,
		prompt: "Please enter the passphrase to verify and (if encrypted) decrypt the backup: "})
	if err != nil {
		return err
	}
	var in io.Reader
	var size int64
	if location == "-" {
		in = env.IO.In
	} else {
		f, err := os.Open(location)
		if err != nil {
			return fmt.Errorf("unable to read the qubes backup file %s: %w", location, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			if st.IsDir() {
				return fmt.Errorf("%s is a directory: format 1 backups are not supported", location)
			}
			size = st.Size()
		}
		in = f
	}
	env.infof(prog, "Checking backup content...")
	counted := &restoreCounter{r: in}
	arch, err := backup.OpenArchive(ctx, counted, backup.ReadOptions{Passphrase: pass, Filter: o.filter, MaxExpansion: o.maxExpansion})
	if err != nil {
		return err
	}
	defer arch.Close()
	// Bounded memory: two chunks in flight (and, without the SIMD KDF,
	// a derivation on the heap).
	debug.SetMemoryLimit(2*(backup.DefaultChunkSize+backup.ScryptOverhead) + backup.KDFHeapBytes(arch.Params) + 32<<20)
	if env.Verbosity() >= 2 && arch.Params.LogN != 0 {
		fmt.Fprintf(env.IO.Err, "backup format %d, scrypt parameters of its header: logN=%d r=%d p=%d\n",
			arch.Header.Version, arch.Params.LogN, arch.Params.R, arch.Params.P)
	}
	var backupApp *core.App
	if arch.Header.Version >= 4 {
		backupApp, err = core.Parse(arch.QubesXML, "qubes.xml in the backup", env.StateDir(), hostInfo())
		if err != nil {
			return fmt.Errorf("qubes.xml in the backup: %w", err)
		}
	} else {
		backupApp, err = arch.V3App(env.StateDir(), hostInfo())
		if err != nil {
			return fmt.Errorf("qubes.xml in the backup: %w", err)
		}
	}

	items, home, err := planRestore(ctx, env, o, backupApp, names)
	if err != nil {
		return err
	}
	fmt.Fprint(env.IO.Out, restoreSummary(backupApp, items, home))
	if err := handleBroken(env, prog, o, items); err != nil {
		return err
	}
	if err := handleHome(env, prog, o, home); err != nil {
		return err
	}
	if o.passphraseFile == "" && !o.yes {
		if a := confirm(env, "Do you want to proceed? [y/N] "); a != "y" && a != "Y" {
			return nil
		}
	}

	byDir := map[string]*restoreItem{}
	var total int64
	for _, it := range items {
		if it.good() {
			byDir[it.dir] = it
			total += it.size
		}
	}
	if home != nil {
		total += home.size
	}
	if len(byDir) == 0 && home == nil {
		env.infof(prog, "-> Done. (nothing to restore)")
		return nil
	}
	staging := ""
	if !o.verifyOnly {
		staging, err = os.MkdirTemp(env.StateDir(), ".qvm-restore-")
		if err != nil {
			return fmt.Errorf("restore staging directory: %w", err)
		}
		defer os.RemoveAll(staging)
	}
	mode := progressAuto
	if o.noProgress {
		mode = progressPlain
	}
	if size > 0 {
		total = size
	}
	bar := newProgress(env, mode, "Restoring...", total)
	counted.progress = bar.Add
	open := func(name string, size int64) (io.WriteCloser, error) {
		if strings.HasPrefix(name, backup.HomePrefix) {
			if home == nil {
				return nil, nil
			}
			bar.Label("dom0")
			return home.open(ctx, env, name, o.verifyOnly, o.ignoreSizeLimit)
		}
		cut := strings.LastIndexByte(name, '/') + 1
		dir, file := name[:cut], name[cut:]
		it := byDir[dir]
		if it == nil {
			return nil, nil
		}
		bar.Label(it.newName)
		it.seen[file] = true
		kind := restoreFileKind(it.src, file)
		if kind == "" {
			return nil, nil // no handler: ignored, as the stock restore does
		}
		// A crafted size must not make the restore write (or scan) without
		// bound: a volume may be as large as its config in the backup says,
		// other files 16 MiB.
		limit := int64(16 << 20)
		if kind == "volume" {
			limit = 16 << 40
			if v := it.src.Volume(strings.TrimSuffix(file, ".img")); v != nil && v.Size > 0 {
				limit = v.Size
			}
		}
		if !o.ignoreSizeLimit && size > limit {
			return nil, fmt.Errorf("%s is %d bytes, more than the %d the backup's qubes.xml allows; if you believe this is ok, use --ignore-size-limit option", name, size, limit)
		}
		if o.verifyOnly {
			return nopWriteCloser{io.Discard}, nil
		}
		p := filepath.Join(staging, fmt.Sprintf("%d-%s", it.index, file))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		it.staged[file] = p
		return backup.NewSparseFile(f, size), nil
	}
	if home != nil {
		defer home.cleanup()
	}
	err = arch.Extract(ctx, func(dir string) bool { return byDir[dir] != nil || dir == backup.HomePrefix && home != nil }, open)
	bar.Done()
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("restore interrupted; nothing was restored")
	}
	if err != nil {
		return fmt.Errorf("unable to extract the qubes backup: %w", err)
	}
	// The format has no manifest: an archive cut between two files looks
	// complete. Every saved volume of a restored qube must have arrived.
	for _, it := range items {
		if !it.good() {
			continue
		}
		var need []string
		for _, v := range it.src.Volumes {
			if v.SaveOnStop {
				need = append(need, v.Name+".img")
			}
		}
		if len(it.src.Volumes) == 0 {
			need = append(need, "private.img")
		}
		for _, f := range need {
			if !it.seen[f] {
				return fmt.Errorf("unable to extract the qubes backup: %s%s of %s is missing from the archive (truncated or incomplete backup); nothing was restored", it.dir, f, it.name)
			}
		}
	}
	if home != nil && !home.seen {
		return fmt.Errorf("unable to extract the qubes backup: %s%s (dom0's home) is missing from the archive (truncated or incomplete backup); nothing was restored", backup.HomePrefix, home.user)
	}
	if o.verifyOnly {
		env.infof(prog, "-> Done. The backup verified correctly.")
		return nil
	}
	if err := commitRestore(ctx, env, items); err != nil {
		return err
	}
	if home != nil {
		if err := home.commit(env); err != nil {
			return err
		}
	}
	env.infof(prog, "-> Done.")
	env.infof(prog, "-> Please install updates for all the restored templates.")
	return nil
}

type restoreCounter struct {
	r        io.Reader
	progress func(int64)
}

func (c *restoreCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.progress != nil && n > 0 {
		c.progress(int64(n))
	}
	return n, err
}

// ReadAt lets the backup reader look ahead in a backup file, to start
// the key derivations of the next chunks early (backup/kdfahead.go); it
// reads the file at offsets, not through the progress count. Stdin or a
// pipe answers with an error and the reader keeps to the stream.
func (c *restoreCounter) ReadAt(p []byte, off int64) (int, error) {
	if ra, ok := c.r.(io.ReaderAt); ok {
		return ra.ReadAt(p, off)
	}
	return 0, errors.New("restore source cannot be read at offsets")
}

// restoreFileKind says which handler an inner file has.
func restoreFileKind(src *core.Domain, file string) string {
	switch file {
	case "firewall.xml", "notes.txt":
		return file
	}
	if vol, ok := strings.CutSuffix(file, ".img"); ok {
		if v := src.Volume(vol); v != nil {
			if v.SaveOnStop {
				return "volume"
			}
			return ""
		}
		// No volume config (format 3): the class's saved volumes.
		if vol == "private" || vol == "root" && (src.Class == "TemplateVM" || src.Class == "StandaloneVM") {
			return "volume"
		}
	}
	return ""
}

func planRestore(ctx context.Context, env *Env, o restoreOptions, bapp *core.App, names []string) ([]*restoreItem, *restoreHome, error) {
	exclude := map[string]bool{}
	for _, x := range o.exclude {
		exclude[x] = true
	}
	var items []*restoreItem
	var home *restoreHome
	for _, d := range bapp.Domains() {
		if d.Class == "AdminVM" {
			if v, _ := d.Feature("backup-content"); v != "" && v != "0" && !strings.EqualFold(v, "false") && !o.skipDom0Home {
				h, err := planHomeRestore(env, o, d)
				if err != nil {
					return nil, nil, err
				}
				home = h
			}
			continue
		}
		if v, _ := d.Feature("backup-content"); v == "" || v == "0" || strings.EqualFold(v, "false") {
			continue
		}
		path, _ := d.Feature("backup-path")
		if !validBackupDir(path) {
			return nil, nil, fmt.Errorf("qubes.xml in the backup: qube %s has an invalid backup-path %q", d.Name(), path)
		}
		var size int64
		if s, ok := d.Feature("backup-size"); ok {
			fmt.Sscan(s, &size)
		}
		it := &restoreItem{src: d, name: d.Name(), newName: d.Name(), dir: path, size: size, staged: map[string]string{}, seen: map[string]bool{}, index: len(items)}
		if d.HasTemplate() {
			if t, ok := d.Explicit("template"); ok {
				it.template = t.S
			}
		}
		if exclude[it.name] || (len(names) > 0 && !containsString(names, it.name)) {
			it.excluded = true
		}
		items = append(items, it)
	}
	for _, n := range names {
		found := false
		for _, it := range items {
			found = found || it.name == n
		}
		if !found {
			return nil, nil, fmt.Errorf("qube %s is not in the backup", n)
		}
	}
	err := env.view(ctx, func(app *core.App) error {
		taken := map[string]bool{}
		for _, it := range items {
			taken[it.name] = true
		}
		inBackup := func(name string, ok func(*core.Domain) bool) bool {
			for _, it := range items {
				if it.newName == name && it.good() && ok(it.src) {
					return true
				}
			}
			return false
		}
		for _, it := range items {
			if it.excluded {
				continue
			}
			if _, err := app.Domain(it.name); err == nil && !o.verifyOnly {
				if o.renameConflicting {
					if n := renameFor(app, it.name, taken); n != "" {
						it.newName = n
						taken[n] = true
					} else {
						it.problem = "exists"
					}
				} else {
					it.problem = "exists"
				}
			}
		}
		for _, it := range items {
			if !it.good() || !it.src.HasTemplate() {
				continue
			}
			isTpl := func(d *core.Domain) bool {
				if it.src.Class == "DispVM" {
					v, _ := d.Explicit("template_for_dispvms")
					return v.Bool()
				}
				return d.Class == "TemplateVM"
			}
			if t, err := app.Domain(it.template); err == nil && isTpl(t) {
				continue
			}
			if it.template != "" && inBackup(it.template, isTpl) {
				continue
			}
			def := "default_template"
			if it.src.Class == "DispVM" {
				def = "default_dispvm"
			}
			if dv, err := app.Get(nil, def); o.ignoreMissing && err == nil && !dv.None {
				it.tplNote = dv.S
				it.template = dv.S
			} else {
				it.problem = "template"
			}
		}
		for _, it := range items {
			if !it.good() {
				continue
			}
			nv, ok := it.src.Explicit("netvm")
			if !ok || nv.None || nv.S == "" {
				continue
			}
			provides := func(d *core.Domain) bool { v, _ := d.Explicit("provides_network"); return v.Bool() }
			if d, err := app.Domain(nv.S); err == nil && provides(d) {
				continue
			}
			if inBackup(nv.S, provides) {
				continue
			}
			if o.ignoreMissing {
				it.dropNetvm = true // the default netvm applies
			} else {
				it.problem = "netvm"
			}
		}
		return nil
	})
	return items, home, err
}

// validBackupDir: vmN/ (format 4, mangled format 3) or the qube's own
// directory (unencrypted format 3).
var backupDirRE = regexp.MustCompile(`^(vm[0-9]+|(appvms|vm-templates|servicevms)/[A-Za-z0-9][A-Za-z0-9_.-]*)/$`)

func validBackupDir(p string) bool { return backupDirRE.MatchString(p) && !strings.Contains(p, "..") }

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// renameFor is the reference's new_name_for_conflicting_vm.
func renameFor(app *core.App, orig string, taken map[string]bool) string {
	base := orig
	if len(base) > 29 {
		base = base[:29]
	}
	for i := 1; i < 100; i++ {
		n := fmt.Sprintf("%s-%d", base, i)
		if _, err := app.Domain(n); err != nil && !taken[n] {
			return n
		}
	}
	return ""
}

// restoreSummary is the stock table (spec/backup.md §11.4).
func restoreSummary(bapp *core.App, items []*restoreItem, home *restoreHome) string {
	hdr := []string{"name", "type", "template", "netvm", "label"}
	rows := [][]string{}
	for _, it := range items {
		tpl := "n/a"
		if it.src.HasTemplate() {
			if t, ok := it.src.Explicit("template"); ok {
				tpl = t.S
			}
		}
		netvm := "(default)"
		if v, ok := it.src.Explicit("netvm"); ok {
			netvm = v.S
			if v.None || v.S == "" {
				netvm = "-"
			}
		}
		label, _ := bapp.Get(it.src, "label")
		rows = append(rows, []string{it.name, it.src.Class, tpl, netvm, label.S})
	}
	if home != nil {
		label, _ := bapp.Get(home.src, "label")
		rows = append(rows, []string{"dom0", home.src.Class, "n/a", "-", label.S})
	}
	w := make([]int, len(hdr))
	for i, h := range hdr {
		w[i] = len(h)
		for _, r := range rows {
			w[i] = max(w[i], len(r[i]))
		}
	}
	var b strings.Builder
	b.WriteString("The following VMs are included in the backup:\n\n")
	sep := func() {
		for _, n := range w {
			b.WriteString(strings.Repeat("-", n+2) + "+")
		}
		b.WriteByte('\n')
	}
	line := func(cells []string) {
		for i, c := range cells {
			fmt.Fprintf(&b, "%*s |", w[i]+1, c)
		}
	}
	sep()
	line(hdr)
	b.WriteByte('\n')
	sep()
	for i, it := range items {
		line(rows[i])
		switch {
		case it.excluded:
			b.WriteString(" <-- Excluded from restore")
		case it.problem == "exists":
			b.WriteString(" <-- A VM with the same name already exists on the host!")
		case it.problem == "template":
			b.WriteString(" <-- No matching template on the host or in the backup found!")
		case it.problem == "netvm":
			b.WriteString(" <-- No matching netvm on the host or in the backup found!")
		default:
			if it.tplNote != "" {
				fmt.Fprintf(&b, " <-- Template change to '%s'", it.tplNote)
			}
			if it.newName != it.name {
				fmt.Fprintf(&b, " <-- Will be renamed to '%s'", it.newName)
			}
		}
		b.WriteByte('\n')
	}
	if home != nil {
		line(rows[len(rows)-1])
		if home.mismatch {
			b.WriteString(" <-- username in backup and dom0 mismatch")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// handleBroken prints the stock decisions and refuses what they refuse.
func handleBroken(env *Env, prog string, o restoreOptions, items []*restoreItem) error {
	has := func(p string) bool {
		for _, it := range items {
			if !it.excluded && it.problem == p {
				return true
			}
		}
		return false
	}
	say := func(s string) { fmt.Fprintln(env.IO.Err, s) }
	if has("exists") {
		say("*** There are VMs with conflicting names on the host! ***")
		if !o.skipConflicting {
			return &ExitError{Code: 1, Msg: "Remove VMs with conflicting names from the host before proceeding.\nOr use --skip-conflicting to restore only those VMs that do not exist on the host.\nOr use --rename-conflicting to restore those VMs under modified names (with numbers at the end)."}
		}
		say("Those VMs will not be restored. The host VMs will NOT be overwritten.")
	}
	if o.verifyOnly {
		say("The above VM archive(s) will be verified.")
		say("Existing VMs will NOT be removed or altered.")
	} else {
		say("The above VMs will be copied and added to your system.")
		say("Existing VMs will NOT be removed.")
	}
	for _, k := range []struct{ p, what string }{{"template", "TemplateVMs"}, {"netvm", "NetVMs"}} {
		if !has(k.p) {
			continue
		}
		say(fmt.Sprintf("*** One or more %s are missing on the host! ***", k.what))
		switch {
		case o.skipBroken:
			say(fmt.Sprintf("Skipping broken entries: VMs that depend on missing %s will NOT be restored.", k.what))
		case o.ignoreMissing:
			// Only where no default exists either: those qubes are left out.
			say(fmt.Sprintf("Ignoring missing entries: VMs that depend on missing %s will have default value assigned.", k.what))
		default:
			return &ExitError{Code: 1, Msg: "Install them before proceeding with the restore.Or pass: --skip-broken or --ignore-missing."}
		}
	}
	_ = prog
	return nil
}

// commitRestore adds the restored qubes to qubes.xml and moves their
// staged data into place, all under one lock: either every qube lands
// with its data or none does.
func commitRestore(ctx context.Context, env *Env, items []*restoreItem) error {
	var good []*restoreItem
	for _, it := range items {
		if it.good() {
			good = append(good, it)
		}
	}
	rank := func(it *restoreItem) int {
		if it.src.Class == "TemplateVM" {
			return 0
		}
		if v, _ := it.src.Explicit("template_for_dispvms"); v.Bool() {
			return 1
		}
		return 2
	}
	sort.SliceStable(good, func(i, j int) bool { return rank(good[i]) < rank(good[j]) })
	renamed := map[string]string{}
	for _, it := range good {
		renamed[it.name] = it.newName
	}
	var created []*core.Domain
	var capp *core.App
	cleanup := func() {
		if capp == nil {
			return
		}
		st := storage.Open(capp, env.storageOptions())
		for i := len(created) - 1; i >= 0; i-- {
			_ = st.Remove(ctx, created[i])
		}
	}
	err := env.update(ctx, func(app *core.App) error {
		capp = app
		st := storage.Open(app, env.storageOptions())
		made := map[*restoreItem]*core.Domain{}
		for _, it := range good {
			if _, err := app.Domain(it.newName); err == nil {
				return fmt.Errorf("a qube named %s appeared on the host during the restore; nothing was restored", it.newName)
			}
			tpl := it.template
			if n, ok := renamed[tpl]; ok {
				tpl = n
			}
			label, _ := it.src.Explicit("label")
			d, err := app.ImportDomain(it.src, core.ImportOpts{Name: it.newName, Label: label.S, Template: tpl})
			if err != nil {
				return fmt.Errorf("Error restoring VM %s: %w", it.name, err)
			}
			made[it] = d
		}
		for _, it := range good {
			d := made[it]
			for _, prop := range []string{"netvm", "default_dispvm"} {
				v, ok := it.src.Explicit(prop)
				if !ok || prop == "netvm" && it.dropNetvm {
					continue
				}
				if v.None || v.S == "" {
					_ = app.SetNone(d, prop)
					continue
				}
				target := v.S
				if n, ok := renamed[target]; ok {
					target = n
				}
				if err := app.Set(d, prop, target); err != nil {
					env.warnf(env.progFor("qvm restore"), "%s: %s %s not set (%v); the default applies", it.newName, prop, target, err)
				}
			}
		}
		for _, it := range good {
			d := made[it]
			if err := st.Create(ctx, d); err != nil {
				return fmt.Errorf("Error restoring VM %s: %w", it.name, err)
			}
			created = append(created, d)
			files := make([]string, 0, len(it.staged))
			for f := range it.staged {
				files = append(files, f)
			}
			sort.Strings(files)
			for _, file := range files {
				staged := it.staged[file]
				switch file {
				case "firewall.xml", "notes.txt":
					dst := filepath.Join(app.VMDir(d), file)
					if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
						return err
					}
					if err := os.Rename(staged, dst); err != nil {
						return fmt.Errorf("restore %s of %s: %w", file, it.newName, err)
					}
					continue
				}
				v, err := st.Volume(d, strings.TrimSuffix(file, ".img"))
				if err != nil {
					return fmt.Errorf("restore %s of %s: %w", file, it.newName, err)
				}
				// The staged file moves into the pool when it can (same
				// filesystem, a file-based pool): no second copy of the data.
				err = v.ImportFile(ctx, staged)
				if err == nil {
					err = failpoint.Hit(FailpointRestoreImport)
				}
				if err != nil {
					return fmt.Errorf("Failed to restore volume %s of VM %s: %w", v.Name(), it.newName, err)
				}
			}
		}
		// Every volume is in place; what follows is the qubes.xml write
		// that makes the restored qubes exist.
		return failpoint.Hit(FailpointRestoreCommit)
	})
	if err != nil {
		cleanup() // qubes.xml was not written: remove what was made
		return err
	}
	return nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
