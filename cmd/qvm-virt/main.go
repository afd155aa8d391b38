// Command qvm-virt is qvm's hypervisor helper: qvm starts it at its first
// hypervisor call and talks to it over a pipe, so the qvm binary itself
// never links libvirt (see core/virt). It is installed next to qvm.
package main

import (
	"os"

	"github.com/qvm-dev/qvm/core/virt/lvconn"
)

func main() { os.Exit(lvconn.Main(os.Args[1:])) }
