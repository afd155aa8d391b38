package lvconn

import (
	"context"
	"fmt"
	"os"

	"github.com/qvm-dev/qvm/core/virt"
)

var _ virt.Hypervisor = (*Conn)(nil)

// OpenHypervisor is Open as a virt.Opener: for the helper, and for tests
// that keep the connection in their own process (virt.SetInProcess).
func OpenHypervisor(ctx context.Context, cfg virt.Config) (virt.Hypervisor, error) {
	return Open(ctx, cfg)
}

// Main is the helper's (qvm-virt's) whole job: serve the connection qvm
// asks for on stdin/stdout. It returns the exit code.
func Main(args []string) int {
	if len(args) != 1 || args[0] != "serve" || os.Getenv(virt.EnvHelperChild) != "1" {
		fmt.Fprintf(os.Stderr, "%s: qvm's hypervisor helper, started by qvm only (usage: %s serve)\n", virt.HelperName, virt.HelperName)
		return 2
	}
	if err := virt.Serve(context.Background(), os.Stdin, os.Stdout, OpenHypervisor); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", virt.HelperName, err)
		return 1
	}
	return 0
}
