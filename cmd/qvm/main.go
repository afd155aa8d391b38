// Command qvm administers Qubes qubes by working on the state files directly.
package main

import (
	"os"

	"github.com/qvm-dev/qvm/commands"
)

func main() {
	os.Exit(commands.Main(os.Args, commands.StdIO()))
}
