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
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Generate man pages and shell completions",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
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
			}
			fmt.Fprintf(env.IO.Out, "wrote man pages to %q and completions to %q\n", manDir, compDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "directory for man pages")
	cmd.Flags().StringVar(&compDir, "completions", "", "directory for completion scripts")
	return cmd
}
