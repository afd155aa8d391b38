package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
)

type prefsOptions struct {
	global      bool
	hideDefault bool
	reset       bool
	helpProps   bool
	format      string
	get, set    bool // accepted for compatibility, ignored
}

func newPrefsCmd(env *Env) *cobra.Command {
	var o prefsOptions
	cmd := &cobra.Command{
		Use:   "prefs [flags] VMNAME [PROPERTY [VALUE | -D]]",
		Short: "List, get or set properties of a qube (or the global ones with --global)",
		Long: `Without PROPERTY lists all properties: name, D (default) or - (set), value.
With PROPERTY prints its value (nothing for None); with VALUE sets it;
with -D resets it to the default. For VM-reference properties the value
"none" (any case) or "" means no qube. Invoked as qubes-prefs it works on the
global properties, as does --global.`,
		RunE:              func(cmd *cobra.Command, args []string) error { return runPrefs(cmd.Context(), env, o, args) },
		ValidArgsFunction: completePrefsArgs(env, &o),
	}
	f := cmd.Flags()
	f.BoolVar(&o.global, "global", false, "work on the global properties (as qubes-prefs)")
	f.BoolVar(&o.hideDefault, "hide-default", false, "do not show properties that are default")
	f.BoolVarP(&o.reset, "default", "D", false, "reset PROPERTY to its default")
	f.BoolVar(&o.helpProps, "help-properties", false, "list the properties with a short help and exit")
	f.StringVar(&o.format, "format", "text", "output of a listing: text or json")
	f.BoolVarP(&o.get, "get", "g", false, "ignored (compatibility)")
	f.BoolVarP(&o.set, "set", "s", false, "ignored (compatibility)")
	_ = f.MarkHidden("get")
	_ = f.MarkHidden("set")
	return cmd
}

// vmRefNone: for VM-reference properties "none" means no qube.
func isNoneWord(s string) bool { return strings.EqualFold(s, "none") }

func runPrefs(ctx context.Context, env *Env, o prefsOptions, args []string) error {
	if o.helpProps {
		return env.view(ctx, func(app *core.App) error {
			var d *core.Domain
			if !o.global {
				if len(args) == 0 {
					return usagef("the following arguments are required: VMNAME")
				}
				var err error
				if d, err = oneVM(app, args[0]); err != nil {
					return err
				}
			}
			printPropHelp(env, core.Props(d))
			return nil
		})
	}
	if !o.global && len(args) == 0 {
		return usagef("the following arguments are required: VMNAME")
	}
	vmArgs := 1
	if o.global {
		vmArgs = 0
	}
	rest := args[vmArgs:]
	if len(rest) > 2 {
		return usagef("unrecognized arguments: %s", strings.Join(rest[2:], " "))
	}
	if o.reset && len(rest) != 1 {
		if len(rest) == 0 {
			return usagef("--default requires a PROPERTY")
		}
		return usagef("cannot both set and reset a property")
	}
	target := func(app *core.App) (*core.Domain, error) {
		if o.global {
			return nil, nil
		}
		return oneVM(app, args[0])
	}
	switch {
	case len(rest) == 0:
		return env.view(ctx, func(app *core.App) error {
			d, err := target(app)
			if err != nil {
				return err
			}
			return listProps(env, app, d, o)
		})
	case len(rest) == 1 && !o.reset:
		prop := strings.ReplaceAll(rest[0], "-", "_")
		return env.view(ctx, func(app *core.App) error {
			d, err := target(app)
			if err != nil {
				return err
			}
			v, err := app.Get(d, prop)
			if err != nil {
				return propError(err)
			}
			if o.hideDefault && app.IsDefault(d, prop) {
				return nil
			}
			if !v.None {
				fmt.Fprintln(env.IO.Out, v.S)
			}
			return nil
		})
	}
	prop := strings.ReplaceAll(rest[0], "-", "_")
	return env.update(ctx, func(app *core.App) error {
		d, err := target(app)
		if err != nil {
			return err
		}
		if o.reset {
			return propError(app.Reset(d, prop))
		}
		val := rest[1]
		if isVMRef(d, prop) && isNoneWord(val) {
			return propError(app.SetNone(d, prop))
		}
		return propError(app.Set(d, prop, val))
	})
}

func isVMRef(d *core.Domain, prop string) bool {
	for _, p := range core.Props(d) {
		if p.Name == prop {
			return p.Kind == core.KVM
		}
	}
	return false
}

// propError turns an unknown property into a usage error (exit 2).
func propError(err error) error {
	var np *core.NoSuchPropertyError
	if errors.As(err, &np) {
		return &UsageError{Msg: np.Error()}
	}
	return err
}

type propRow struct {
	Name    string  `json:"name"`
	Default bool    `json:"default"`
	Value   *string `json:"value"`
	Error   string  `json:"error,omitempty"`
}

func listProps(env *Env, app *core.App, d *core.Domain, o prefsOptions) error {
	var rows []propRow
	width := 0
	// Names are padded to the longest of all properties, shown or not.
	for _, p := range core.Props(d) {
		width = max(width, len(p.Name))
	}
	for _, p := range core.Props(d) {
		isDef := app.IsDefault(d, p.Name) || p.Stateless || p.ReadOnly
		if o.hideDefault && isDef {
			continue
		}
		r := propRow{Name: p.Name, Default: isDef}
		if v, err := app.Get(d, p.Name); err != nil {
			r.Error = err.Error()
		} else if !v.None {
			s := v.S
			r.Value = &s
		}
		rows = append(rows, r)
	}
	if o.format == "json" {
		return writeJSON(env.IO.Out, rows)
	}
	if o.format != "text" {
		return usagef("--format must be text or json, not %q", o.format)
	}
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(env.IO.Out, "%-*s  U\n", width, r.Name)
			continue
		}
		flag := "-"
		if r.Default {
			flag = "D"
		}
		val := "None"
		if r.Value != nil {
			val = *r.Value
		}
		fmt.Fprintf(env.IO.Out, "%-*s  %s  %s\n", width, r.Name, flag, val)
	}
	return nil
}

func printPropHelp(env *Env, props []*core.Prop) {
	width := 0
	for _, p := range props {
		width = max(width, len(p.Name))
	}
	for _, p := range props {
		lines := wrap(p.Help, 80-width-4)
		for i, l := range lines {
			if i == 0 {
				fmt.Fprintf(env.IO.Out, "  %-*s  %s\n", width, p.Name, l)
			} else {
				fmt.Fprintf(env.IO.Out, "%s%s\n", strings.Repeat(" ", width+6), l)
			}
		}
	}
}

func wrap(s string, width int) []string {
	if width < 20 {
		width = 20
	}
	var lines []string
	cur := ""
	for _, w := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = w
			continue
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	return append(lines, cur)
}
