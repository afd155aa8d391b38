package commands

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// passphraseSource says where a passphrase comes from: a file, "-" for
// stdin, or "" for a prompt on the terminal. It is never taken from the
// command line or the environment, where other users and logs could see it.
type passphraseSource struct {
	file    string
	prompt  string
	confirm string // second prompt; empty: ask once
}

func readPassphrase(env *Env, src passphraseSource) (string, error) {
	switch src.file {
	case "-":
		return firstLine(env.IO.In, "standard input")
	case "":
	default:
		f, err := os.Open(src.file)
		if err != nil {
			return "", fmt.Errorf("passphrase file: %w", err)
		}
		defer f.Close()
		return firstLine(f, src.file)
	}
	if !env.IO.InIsTTY {
		return "", usagef("no passphrase: standard input is not a terminal; give --passphrase-file FILE (or - to read it from standard input)")
	}
	ask := func(prompt string) (string, error) {
		fmt.Fprint(env.IO.Err, prompt)
		b, err := term.ReadPassword(env.IO.InFd)
		fmt.Fprintln(env.IO.Err)
		if err != nil {
			return "", fmt.Errorf("read passphrase: %w", err)
		}
		return string(b), nil
	}
	p, err := ask(src.prompt)
	if err != nil {
		return "", err
	}
	if src.confirm != "" {
		again, err := ask(src.confirm)
		if err != nil {
			return "", err
		}
		if again != p {
			return "", &ExitError{Code: 1, Msg: "Passphrase mismatch!"}
		}
	}
	if p == "" {
		return "", fmt.Errorf("empty passphrase")
	}
	return p, nil
}

// firstLine is the stock rule: the first line, trailing white space removed.
func firstLine(r io.Reader, what string) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read passphrase from %s: %w", what, err)
	}
	p := strings.TrimRight(line, " \t\r\n")
	if p == "" {
		return "", fmt.Errorf("empty passphrase in %s", what)
	}
	return p, nil
}
