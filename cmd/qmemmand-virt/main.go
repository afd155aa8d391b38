// Command qmemmand-virt is qmemmand's libvirt helper: qmemmand starts it
// for each balancing session (and once to watch domain events), so the
// daemon itself never links libvirt.
package main

import (
	"os"

	"github.com/qvm-dev/qvm/memd/virthost"
)

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	os.Exit(virthost.ServeHelperMain(mode))
}
