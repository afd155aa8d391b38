// Command qvm administers Qubes qubes by working on the state files directly.
package main

import (
	"os"
	"runtime/debug"

	"github.com/qvm-dev/qvm/commands"
)

func main() {
	// A short-lived CLI: collecting garbage less often is faster and the
	// heap stays small (a 1000-qube state is about 1.5 MiB of XML).
	debug.SetGCPercent(400)
	os.Exit(commands.Main(os.Args, commands.StdIO()))
}
