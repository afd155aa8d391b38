package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/backup"
	"github.com/qvm-dev/qvm/core"
	"github.com/qvm-dev/qvm/storage"
)

type backupOptions struct {
	yes            bool
	profile        string
	saveProfile    string
	exclude        []string
	destVM         string
	encrypt        bool
	passphraseFile string
	compress       bool
	noCompress     bool
	filter         string
	chunkSize      string
	scryptParams   string
	noProgress     bool
}

func newBackupCmd(env *Env) *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup [flags] DEST [VMNAME...]",
		Short: "Back qubes up into a Qubes backup (format 4, encrypted)",
		Long: `Back qubes up into a Qubes OS backup file (format 4) that the stock
qvm-backup-restore and the manual emergency procedure read. DEST is a
directory (a qubes-<date> file is created in it), a file path, or - for
standard output. Without VMNAME every qube with include_in_backups is
backed up. With dom0 (selected by default) the home directory of dom0's
user (the first member of group qubes, or QVM_DOM0_USER) is included.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), env, cmd, o, args)
		},
		ValidArgsFunction: completeVMs(env, nil),
	}
	f := cmd.Flags()
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.StringVar(&o.profile, "profile", "", "run the backup profile NAME (/etc/qubes/backup/NAME.conf)")
	f.StringVar(&o.saveProfile, "save-profile", "", "save the options as profile NAME")
	f.StringArrayVarP(&o.exclude, "exclude", "x", nil, "exclude the qube (repeatable; @tag:T and @type:C work)")
	f.StringVarP(&o.destVM, "dest-vm", "d", "", "send the backup to a qube (needs qrexec; refused)")
	f.BoolVarP(&o.encrypt, "encrypt", "e", false, "ignored: backups are always encrypted")
	f.StringVarP(&o.passphraseFile, "passphrase-file", "p", "", "read the passphrase from the first line of FILE (- for standard input)")
	f.BoolVarP(&o.compress, "compress", "z", false, "compress (the default)")
	f.BoolVar(&o.noCompress, "no-compress", false, "do not compress")
	f.StringVarP(&o.filter, "compress-filter", "Z", "", "compress with this program (gzip, bzip2, xz, lzma, pbzip2, pigz, zstd, zstdmt)")
	f.StringVar(&o.chunkSize, "chunk-size", "", "plaintext chunk size (default 100M; suffixes K, M)")
	f.StringVar(&o.scryptParams, "scrypt-params", "", "scrypt KDF cost LOGN:R:P (default "+backup.DefaultParams.String()+")")
	f.BoolVar(&o.noProgress, "no-progress", false, "plain progress lines instead of a bar")
	cmd.MarkFlagsMutuallyExclusive("compress", "no-compress", "compress-filter")
	_ = cmd.RegisterFlagCompletionFunc("exclude", completeVMs(env, nil))
	return cmd
}

func parseChunkSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

func (env *Env) backupProfileDir() string {
	if d := os.Getenv("QVM_BACKUP_PROFILE_DIR"); d != "" {
		return d
	}
	return "/etc/qubes/backup"
}

func runBackup(ctx context.Context, env *Env, cmd *cobra.Command, o backupOptions, args []string) error {
	// Ctrl-C or a TERM cancels the run; the partial file or the staged
	// data is removed on the way out.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.destVM != "" {
		return usagef("--dest-vm needs the qrexec qubes.Backup service, which qvm does not have; write to a file in dom0 and copy it")
	}
	var prof *backupProfile
	if o.profile != "" {
		for _, fl := range []string{"exclude", "passphrase-file", "compress", "no-compress", "compress-filter", "save-profile"} {
			if cmd.Flags().Changed(fl) {
				return usagef("--%s option could not be used together with --profile", fl)
			}
		}
		if len(args) > 0 {
			return usagef("a backup location and qubes can not be given together with --profile")
		}
		p, err := loadBackupProfile(env.backupProfileDir(), o.profile)
		if err != nil {
			return err
		}
		if p.DestinationVM != "dom0" && p.DestinationVM != "" {
			return stockErrorf("Invalid destination_vm specified in backup profile (qvm writes to dom0 files only)")
		}
		if p.PassphraseText == "" {
			return stockErrorf("Invalid backup profile - passphrase_vm needs qrexec; use passphrase_text")
		}
		prof = p
	} else {
		if len(args) == 0 {
			return usagef("either --profile or 'backup_location' is required")
		}
		prof = &backupProfile{DestinationVM: "dom0", DestinationPath: args[0], Exclude: o.exclude}
		if len(args) > 1 {
			inc := append([]string(nil), args[1:]...)
			prof.Include = &inc
		}
		switch {
		case o.noCompress:
			prof.Compression = false
		case o.filter != "":
			prof.Compression = o.filter
		default:
			prof.Compression = true
		}
	}
	compressed, filter := true, "gzip"
	switch c := prof.Compression.(type) {
	case bool:
		compressed = c
	case string:
		filter = c
	}
	if compressed {
		if err := backup.CheckWriteFilter(filter); err != nil {
			return usagef("%v", err)
		}
	}
	params := backup.DefaultParams
	if o.scryptParams != "" {
		p, err := backup.ParseParams(o.scryptParams)
		if err != nil {
			return usagef("--scrypt-params: %v", err)
		}
		params = p
	}
	chunk := int64(backup.DefaultChunkSize)
	if o.chunkSize != "" {
		n, err := parseChunkSize(o.chunkSize)
		if err != nil || n < 4096 || n > backup.MaxChunkSize {
			return usagef("--chunk-size %q: give 4K..256M", o.chunkSize)
		}
		chunk = n
	}

	plan, err := planBackup(ctx, env, prof, chunk)
	if err != nil {
		plan.close()
		return err
	}
	defer plan.close()
	summaryTo := env.IO.Out
	if prof.DestinationPath == "-" {
		summaryTo = env.IO.Err // stdout carries the backup itself
		if o.passphraseFile == "" && prof.PassphraseText == "" && !env.IO.InIsTTY {
			return usagef("backup to standard output needs --passphrase-file FILE or a terminal")
		}
	}
	fmt.Fprint(summaryTo, backupSummary(plan.rows, plan.notSelected))
	if plan.homeSkipped != "" {
		env.warnf(env.progFor("qvm backup"), "dom0's home directory is not backed up: %s", plan.homeSkipped)
	}
	if len(plan.qubes) == 0 {
		return fmt.Errorf("no qubes selected for backup")
	}
	if !o.yes {
		if a := confirm(env, "Do you want to proceed? [y/N] "); a != "y" && a != "Y" {
			return nil
		}
	}
	pass := prof.PassphraseText
	if pass == "" {
		pass, err = readPassphrase(env, passphraseSource{file: o.passphraseFile,
			prompt:  "Please enter the passphrase that will be used to encrypt and verify the backup: ",
			confirm: "Enter again for verification: "})
		if err != nil {
			return err
		}
	}
	if o.saveProfile != "" {
		sp := *prof
		sp.PassphraseText = pass
		if err := sp.save(env.backupProfileDir(), o.saveProfile); err != nil {
			return err
		}
	}
	if env.Verbosity() >= 2 {
		fmt.Fprintf(env.IO.Err, "scrypt parameters: logN=%d r=%d p=%d (%d MiB per key; one key per chunk)\n",
			params.LogN, params.R, params.P, params.Memory()>>20)
	}

	// Bounded memory: two chunk buffers and the compressor (and, without
	// the SIMD KDF, a derivation on the heap); the GC is told so instead
	// of letting garbage double the heap.
	debug.SetMemoryLimit(2*chunk + backup.KDFHeapBytes(params) + 32<<20)
	out, commit, abort, err := backupDestination(env, prof.DestinationPath)
	if err != nil {
		return err
	}
	mode := progressAuto
	if o.noProgress {
		mode = progressPlain
	}
	prog := newProgress(env, mode, "Making a backup...", plan.total)
	werr := backup.Write(ctx, out, plan.xml, plan.qubes, backup.Options{
		Passphrase: pass, Params: params, Compressed: compressed, Filter: filter,
		ChunkSize: chunk, BackupID: backup.NewBackupID(env.Now()),
		Progress: prog.Add, Label: prog.Label,
		Warn: func(msg string) { env.warnf(env.progFor("qvm backup"), "dom0 home: %s", msg) },
	})
	prog.Done()
	if werr == nil {
		werr = commit()
	} else {
		abort()
	}
	if werr != nil {
		if errors.Is(werr, context.Canceled) {
			return fmt.Errorf("Backup error: interrupted; the partial file was removed")
		}
		return fmt.Errorf("Backup error: %w", werr)
	}
	now := env.Now().Unix()
	return env.update(ctx, func(app *core.App) error {
		for _, name := range plan.names {
			if d, err := app.Domain(name); err == nil {
				app.SetBackupTimestamp(d, now)
			}
		}
		return nil
	})
}

// backupPlan is what a run will write.
type backupPlan struct {
	xml         []byte
	qubes       []backup.Qube
	names       []string
	rows        []summaryRow
	notSelected []string
	total       int64
	// homeSkipped says why dom0 was selected but its home is not backed up.
	homeSkipped string
	homeRow     *summaryRow
	closers     []func() error
}

func (p *backupPlan) close() {
	for _, c := range p.closers {
		_ = c()
	}
}

func planBackup(ctx context.Context, env *Env, prof *backupProfile, chunk int64) (*backupPlan, error) {
	plan := &backupPlan{}
	err := env.view(ctx, func(app *core.App) error {
		st := storage.Open(app, env.storageOptions())
		sel, notSel, err := selectForBackup(app, prof.Include, prof.Exclude)
		if err != nil {
			return err
		}
		plan.notSelected = notSel
		paths := map[string]string{}
		sizes := map[string]int64{}
		var home *backup.Qube
		for _, d := range sel {
			if d.Class == "AdminVM" {
				q, row, bound, err := planHome(env, prof.DestinationPath, chunk)
				if err != nil {
					var refused *core.ValueError
					if errors.As(err, &refused) {
						return err
					}
					plan.homeSkipped = err.Error()
					continue
				}
				home = q
				plan.homeRow = &row
				paths[d.Name()], sizes[d.Name()] = q.Files[0].Name, bound
				plan.total += row.size
				plan.names = append(plan.names, d.Name())
				continue
			}
			dir := fmt.Sprintf("vm%d/", d.QID())
			q := backup.Qube{Name: d.Name()}
			var size, bound int64
			running, noSnap := app.IsRunning != nil && app.IsRunning(d), false
			for _, v := range d.Volumes {
				if !v.SaveOnStop {
					continue
				}
				if sv, err := st.Volume(d, v.Name); err == nil && sv.Running() {
					running = true
					noSnap = noSnap || sv.SnapshotsDisabled()
				}
				// The committed state (for a running qube: from before its
				// start), held open until the backup is written.
				sv, err := st.Volume(d, v.Name)
				if err != nil {
					return fmt.Errorf("%s: %w", d.Name(), err)
				}
				exp, err := sv.Export(ctx)
				if err != nil {
					return fmt.Errorf("%s: volume %s: %w", d.Name(), v.Name, err)
				}
				f, ok := exp.ReaderAt().(*os.File)
				if !ok {
					exp.Close()
					return fmt.Errorf("%s: volume %s: export is not a file", d.Name(), v.Name)
				}
				plan.closers = append(plan.closers, exp.Close)
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
					size += usage(fi)
				} else {
					size += exp.Size
				}
				b, err := backup.TransferBound(f, chunk)
				if err != nil {
					return fmt.Errorf("%s: volume %s: %w", d.Name(), v.Name, err)
				}
				bound += b
				q.Files = append(q.Files, backup.File{Name: dir + v.Name + ".img", Path: exp.Path, Src: f})
			}
			for _, extra := range []string{"firewall.xml", "notes.txt"} {
				data, err := os.ReadFile(filepath.Join(app.VMDir(d), extra))
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				if err != nil {
					return fmt.Errorf("%s: %w", d.Name(), err)
				}
				size += int64(len(data))
				bound += backup.FileBound(int64(len(data)), 0, chunk)
				q.Files = append(q.Files, backup.File{Name: dir + extra, Data: data})
			}
			if len(q.Files) == 0 {
				q.Files = append(q.Files, backup.File{Name: dir + "empty", Data: []byte{}})
				bound += backup.FileBound(0, 0, chunk)
			}
			note := ""
			if running && noSnap {
				// The stock rule: without snapshots there is no committed
				// state to read while the qube writes its image.
				return fmt.Errorf("%s is running and its private volume snapshots are disabled (revisions_to_keep -1); shut it down first", d.Name())
			} else if running {
				note = " <-- The VM is running, backup will contain its state from before its start!"
			}
			plan.rows = append(plan.rows, summaryRow{d.Name(), backupKind(app, d), size, note})
			plan.qubes = append(plan.qubes, q)
			plan.names = append(plan.names, d.Name())
			// backup-size: an upper bound of the bytes sent, which a
			// restore from a qube enforces; the summary shows the usage.
			paths[d.Name()], sizes[d.Name()] = dir, bound
			plan.total += size
		}
		if home != nil {
			// dom0's home comes last, as in the reference.
			plan.qubes = append(plan.qubes, *home)
			plan.rows = append(plan.rows, *plan.homeRow)
		}
		if plan.homeSkipped != "" {
			plan.notSelected = append([]string{"dom0"}, plan.notSelected...)
		}
		cp, err := core.Parse(app.Marshal(), "qubes.xml", app.StateDir, app.Host)
		if err != nil {
			return err
		}
		cp.PrepareBackupCopy(paths, sizes)
		plan.xml = cp.Marshal()
		return nil
	})
	return plan, err
}

// planHome is dom0's part of a backup: its user's home as the tree
// dom0-home/<user>, last in the archive. An error is a reason to leave
// the home out (with a warning), except the refusal to back the home up
// into itself.
func planHome(env *Env, dest string, chunk int64) (*backup.Qube, summaryRow, int64, error) {
	u, err := env.dom0User()
	if err != nil {
		return nil, summaryRow{}, 0, err
	}
	if dest != "-" && insideDir(dest, u.Home) {
		return nil, summaryRow{}, 0, stockErrorf("Can not backup dom0 home directory to itself!")
	}
	size, data, entries, err := backup.TreeUsage(u.Home)
	if err != nil {
		return nil, summaryRow{}, 0, fmt.Errorf("home directory of %s: %w", u.Name, err)
	}
	q := &backup.Qube{Name: "dom0", Files: []backup.File{{Name: backup.HomePrefix + u.Name, Tree: u.Home}}}
	return q, summaryRow{"dom0", "User home", size, ""}, backup.TreeBound(data, entries, chunk), nil
}

// usage is the on-disk size of a file (st_blocks·512), the reference's
// size estimate.
func usage(st os.FileInfo) int64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512
	}
	return st.Size()
}

// backupDestination opens where the backup goes: a new file in the
// directory, the path itself, or standard output. Files are written under
// a temporary name and renamed when complete.
func backupDestination(env *Env, dest string) (io.Writer, func() error, func(), error) {
	if dest == "-" {
		return env.IO.Out, func() error { return nil }, func() {}, nil
	}
	if st, err := os.Stat(dest); err == nil && st.IsDir() {
		dest = filepath.Join(dest, "qubes-"+env.Now().Format("2006-01-02T150405"))
	} else if _, err := os.Stat(filepath.Dir(dest)); err != nil {
		return nil, nil, nil, stockErrorf("ERROR: the backup directory for %s does not exists", dest)
	}
	if _, err := os.Lstat(dest); err == nil {
		return nil, nil, nil, fmt.Errorf("%s already exists; not overwriting it", dest)
	}
	tmp := dest + ".part~"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	commit := func() error {
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(tmp)
			return err
		}
		if err := f.Close(); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, dest); err != nil {
			os.Remove(tmp)
			return err
		}
		env.infof(env.progFor("qvm backup"), "backup written to %s", dest)
		return nil
	}
	abort := func() { f.Close(); os.Remove(tmp) }
	return f, commit, abort, nil
}
