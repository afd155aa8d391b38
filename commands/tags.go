package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/qvm-dev/qvm/core"
)

func newTagsCmd(env *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tags VMNAME [list|ls|l [TAG] | add|a|set TAG... | del|d|unset|u TAG]",
		Short: "List, add or remove tags of a qube",
		RunE:  func(cmd *cobra.Command, args []string) error { return runTags(cmd.Context(), env, args) },
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			switch len(args) {
			case 0:
				return completeVMs(env, nil)(cmd, args, s)
			case 1:
				return []string{"list", "add", "del"}, cobra.ShellCompDirectiveNoFileComp
			}
			var out []string
			completionState(env, func(app *core.App) {
				if d, err := app.Domain(args[0]); err == nil {
					out = d.SortedTags()
				}
			})
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	}
	return cmd
}

func runTags(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return usagef("the following arguments are required: VMNAME")
	}
	action := "list"
	if len(args) > 1 {
		action = args[1]
	}
	rest := []string{}
	if len(args) > 2 {
		rest = args[2:]
	}
	switch action {
	case "list", "ls", "l":
		if len(rest) > 1 {
			return usagef("unrecognized arguments: %v", rest[1:])
		}
		return env.view(ctx, func(app *core.App) error {
			d, err := oneVM(app, args[0])
			if err != nil {
				return err
			}
			if len(rest) == 1 {
				if !d.Tags[rest[0]] {
					return &ExitError{Code: 1}
				}
				fmt.Fprintln(env.IO.Out, rest[0])
				return nil
			}
			for _, t := range d.SortedTags() {
				fmt.Fprintln(env.IO.Out, t)
			}
			return nil
		})
	case "add", "a", "set":
		if len(rest) == 0 {
			return usagef("the following arguments are required: TAG")
		}
	case "del", "d", "unset", "u":
		if len(rest) != 1 {
			return usagef("del takes exactly one TAG")
		}
	default:
		return usagef("argument action: invalid choice: '%s'", action)
	}
	return env.update(ctx, func(app *core.App) error {
		d, err := oneVM(app, args[0])
		if err != nil {
			return err
		}
		if action == "del" || action == "d" || action == "unset" || action == "u" {
			app.RemoveTag(d, rest[0])
			return nil
		}
		for _, t := range rest {
			if err := app.AddTag(d, t); err != nil {
				return err
			}
		}
		return nil
	})
}
