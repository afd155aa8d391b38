// Command qmemmand balances memory between running qubes.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "qmemmand: no subcommand given")
	os.Exit(2)
}
