package commands

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenDocsCmd writes man pages and shell completions from the command
// tree; `make` runs it so they never drift from the code.
func newGenDocsCmd(env *Env, root *cobra.Command) *cobra.Command {
	var manDir, compDir string
	var listAliases bool
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Generate man pages and shell completions",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if listAliases {
				for _, a := range AliasNames() {
					fmt.Fprintln(env.IO.Out, a)
				}
				return nil
			}
			if manDir != "" {
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "QVM", Section: "1", Source: "qvm " + version, Manual: "qvm manual"}
				if err := doc.GenManTree(root, hdr, manDir); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			if compDir != "" {
				if err := os.MkdirAll(compDir, 0o755); err != nil {
					return err
				}
				gens := []struct {
					name string
					fn   func(string) error
				}{
					{"qvm.bash", func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
					{"_qvm", root.GenZshCompletionFile},
					{"qvm.fish", func(p string) error { return root.GenFishCompletionFile(p, true) }},
				}
				for _, g := range gens {
					if err := g.fn(filepath.Join(compDir, g.name)); err != nil {
						return fmt.Errorf("completion %s: %w", g.name, err)
					}
				}
				if err := registerAliases(compDir); err != nil {
					return err
				}
			}
			fmt.Fprintf(env.IO.Out, "wrote man pages to %q and completions to %q\n", manDir, compDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "directory for man pages")
	cmd.Flags().StringVar(&compDir, "completions", "", "directory for completion scripts")
	cmd.Flags().BoolVar(&listAliases, "list-aliases", false, "print the qvm-* names qvm answers to")
	return cmd
}

// registerAliases makes the shells complete the qvm-* names too; qvm turns
// "<alias> __complete ..." into "__complete <verb> ...".
func registerAliases(dir string) error {
	lines := map[string]func(a string) string{
		"qvm.bash": func(a string) string { return "complete -o default -F __start_qvm " + a },
		"_qvm":     func(a string) string { return "compdef _qvm " + a },
		"qvm.fish": func(a string) string {
			return "complete -c " + a + " -e\ncomplete -c " + a + " -n '__qvm_prepare_completions' -f -a '$__qvm_comp_results'"
		},
	}
	for file, line := range lines {
		f, err := os.OpenFile(filepath.Join(dir, file), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, "\n# qvm also answers to the stock tool names")
		for _, a := range AliasNames() {
			fmt.Fprintln(f, line(a))
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}
