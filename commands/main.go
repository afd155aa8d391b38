package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
)

// IO is what a command reads and writes; tests hand in buffers.
type IO struct {
	In       io.Reader
	Out      io.Writer
	Err      io.Writer
	IsTTY    bool // stdout is a terminal (tables)
	ErrIsTTY bool // stderr is a terminal (progress bars)
	InIsTTY  bool // stdin is a terminal (passphrase prompts)
	// InFd is stdin's descriptor when it is a terminal (no-echo reads).
	InFd int
}

// StdIO is the process's own streams.
func StdIO() IO {
	return IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr,
		IsTTY:    term.IsTerminal(int(os.Stdout.Fd())),
		ErrIsTTY: term.IsTerminal(int(os.Stderr.Fd())),
		InIsTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		InFd:     int(os.Stdin.Fd())}
}

// Main runs qvm with argv and returns the exit code. Invoked through a
// qvm-* link (argv[0]) it behaves as the matching subcommand.
func Main(argv []string, io IO) int {
	return MainContext(context.Background(), argv, io, time.Now)
}

// MainContext is Main with an injected context and clock.
func MainContext(ctx context.Context, argv []string, io IO, now func() time.Time) int {
	env := newEnv(io, now)
	defer env.closeVirt()
	args := argv[1:]
	base := filepath.Base(argv[0])
	if verb, ok := aliasVerb(base); ok {
		env.Prog = base
		// Shell completion calls "<alias> __complete ARGS": the verb goes after it.
		if len(args) > 0 && strings.HasPrefix(args[0], "__complete") {
			args = append(append([]string{args[0]}, verb...), args[1:]...)
		} else {
			args = append(verb, args...)
		}
	}
	root := newRootCmd(env)
	root.SetArgs(args)
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	return env.report(cmd, err)
}

// ExitError ends a command with a code and an optional message.
type ExitError struct {
	Code int
	Msg  string // printed as "<prog>: error: <msg>" unless empty
	Raw  bool   // print Msg as it is
}

func (e *ExitError) Error() string { return e.Msg }

// UsageError is a bad command line: usage line, message, exit 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

func (env *Env) report(cmd interface {
	UseLine() string
	CommandPath() string
}, err error) int {
	prog := env.progFor(cmd.CommandPath())
	var ue *UsageError
	var ee *ExitError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(env.IO.Err, "usage: %s\n%s: error: %s\n", usageLine(cmd.UseLine(), prog), prog, ue.Msg)
		return 2
	case errors.As(err, &ee):
		if ee.Msg != "" {
			if ee.Raw {
				fmt.Fprintln(env.IO.Err, ee.Msg)
			} else {
				fmt.Fprintf(env.IO.Err, "%s: error: %s\n", prog, ee.Msg)
			}
		}
		return ee.Code
	case isCobraUsage(err):
		fmt.Fprintf(env.IO.Err, "usage: %s\n%s: error: %s\n", usageLine(cmd.UseLine(), prog), prog, err)
		return 2
	}
	fmt.Fprintf(env.IO.Err, "%s: error: %s\n", prog, oneLine(err.Error()))
	return 1
}

// usageLine shows the usage with the name the user typed. Nested
// commands (qvm device pci assign) keep their sub-verbs after an alias
// that stands for only part of the path (qvm-pci assign).
func usageLine(use, prog string) string {
	parts := strings.Fields(use)
	skip := 1
	if len(parts) > 1 && parts[0] == "qvm" {
		skip = 2
		if verb, ok := aliasVerb(prog); ok {
			words := 0
			for _, w := range verb {
				if !strings.HasPrefix(w, "-") {
					words++
				}
			}
			skip = 1 + words
		}
	}
	if len(parts) < skip {
		return prog
	}
	rest := parts[skip:]
	// A nested command (qvm firewall export) is already named by prog.
	if len(rest) > 0 && strings.HasSuffix(prog, " "+rest[0]) {
		rest = rest[1:]
	}
	return strings.Join(append([]string{prog}, rest...), " ")
}

func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand flag", "unknown command", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "if any flags in the group", "none of the others can be"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// oneLine keeps error output to one line per error, as users grep it.
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }
