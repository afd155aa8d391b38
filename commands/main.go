package commands

import (
	"fmt"
	"io"
	"os"
)

// IO is what a command reads and writes; tests hand in buffers.
type IO struct {
	In    io.Reader
	Out   io.Writer
	Err   io.Writer
	IsTTY bool
}

// StdIO is the process's own streams.
func StdIO() IO {
	return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}
}

// Main runs qvm with argv and returns the exit code.
func Main(argv []string, io IO) int {
	fmt.Fprintln(io.Err, "qvm: not built yet")
	return 1
}
