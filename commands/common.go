package commands

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
)

// printTable lays rows out like `column -t`: every column but the last is
// padded to its widest cell, columns are separated by two spaces.
func printTable(w io.Writer, rows [][]string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			if n := len([]rune(c)); n > widths[i] {
				widths[i] = n
			}
		}
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	for _, r := range rows {
		for i, c := range r {
			bw.WriteString(c)
			if i < len(r)-1 {
				bw.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))+2))
			}
		}
		bw.WriteByte('\n')
	}
}

// vmSelection is the --all/--exclude/VMNAME... group of the stock tools.
type vmSelection struct {
	all      bool
	exclude  []string
	required bool // one of --all or VMNAME is required
	withDom0 bool // --all includes dom0 (qvm ls)
}

func (s *vmSelection) addFlags(env *Env, cmd *cobra.Command) {
	cmd.Flags().BoolVar(&s.all, "all", false, "act on all qubes")
	cmd.Flags().StringArrayVar(&s.exclude, "exclude", nil, "exclude the qube from --all")
	_ = cmd.RegisterFlagCompletionFunc("exclude", completeVMs(env, nil))
}

// resolve turns the arguments into qubes: globs match sorted names,
// command-line order is kept and duplicates dropped.
func (s *vmSelection) resolve(app *core.App, args []string) ([]*core.Domain, error) {
	if len(s.exclude) > 0 && !s.all {
		return nil, usagef("--exclude can only be used with --all")
	}
	if s.all || (!s.required && len(args) == 0) {
		ex := map[string]bool{}
		for _, e := range s.exclude {
			ex[e] = true
		}
		var out []*core.Domain
		for _, d := range app.Domains() {
			if ex[d.Name()] || (d.Class == "AdminVM" && s.all && !s.withDom0) {
				continue
			}
			out = append(out, d)
		}
		return out, nil
	}
	if len(args) == 0 {
		return nil, usagef("one of the arguments --all VMNAME is required")
	}
	return resolveNames(app, args)
}

func resolveNames(app *core.App, args []string) ([]*core.Domain, error) {
	seen := map[*core.Domain]bool{}
	var out []*core.Domain
	for _, a := range args {
		if strings.ContainsAny(a, "*?[]!") {
			for _, d := range app.Domains() {
				if ok, _ := path.Match(fnmatchToPath(a), d.Name()); ok && !seen[d] {
					seen[d] = true
					out = append(out, d)
				}
			}
			continue
		}
		d, err := app.Domain(a)
		if err != nil {
			return nil, &UsageError{Msg: err.Error()}
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out, nil
}

// fnmatchToPath turns fnmatch's [!x] into path.Match's [^x].
func fnmatchToPath(p string) string { return strings.ReplaceAll(p, "[!", "[^") }

// oneVM resolves the single VMNAME argument of a command (exit 2 if unknown).
func oneVM(app *core.App, name string) (*core.Domain, error) {
	d, err := app.Domain(name)
	if err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	return d, nil
}

// confirm asks on stderr and reads a line; no input (CI, pipes) means no.
func confirm(env *Env, prompt string) string {
	fmt.Fprint(env.IO.Err, prompt)
	line, _ := bufio.NewReader(env.IO.In).ReadString('\n')
	return strings.TrimSpace(line)
}
