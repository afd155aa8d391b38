package commands

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// In a pipe: at most one line a second, and a last line at the end.
func TestLineProgressThrottles(t *testing.T) {
	var errBuf bytes.Buffer
	clk := &fakeClock{t: time.Unix(1000, 0)}
	env := newEnv(IO{Err: &errBuf}, clk.now)
	p := newProgress(env, progressAuto, "Making a backup...", 4<<20)
	p.Label("work")
	for i := 0; i < 4; i++ {
		for j := 0; j < 4; j++ {
			p.Add(256 << 10)
			clk.t = clk.t.Add(300 * time.Millisecond)
		}
	}
	p.Done()
	lines := strings.Split(strings.TrimSpace(errBuf.String()), "\n")
	if len(lines) < 4 || len(lines) > 7 {
		t.Fatalf("%d lines:\n%s", len(lines), errBuf.String())
	}
	if lines[0] != "Making a backup... 6.25% (256.0 KiB of 4.0 MiB) work" {
		t.Errorf("first line %q", lines[0])
	}
	if !strings.HasPrefix(lines[len(lines)-1], "Making a backup... 100.00% (4.0 MiB of 4.0 MiB, ") {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
}

// --quiet (verbosity 0) prints nothing.
func TestQuietProgress(t *testing.T) {
	var errBuf bytes.Buffer
	env := newEnv(IO{Err: &errBuf}, time.Now)
	env.quiet = 1
	p := newProgress(env, progressAuto, "x", 10)
	p.Add(10)
	p.Done()
	if errBuf.Len() != 0 {
		t.Fatalf("printed %q", errBuf.String())
	}
}

// On a terminal the bar shows bytes and the label.
func TestBarProgress(t *testing.T) {
	var errBuf bytes.Buffer
	env := newEnv(IO{Err: &errBuf, ErrIsTTY: true}, time.Now)
	p := newProgress(env, progressAuto, "Importing", 2<<20)
	p.Label("work:private")
	p.Add(2 << 20)
	p.Done()
	out := errBuf.String()
	if !strings.Contains(out, "Importing work:private") || !strings.Contains(out, "100%") || !strings.Contains(out, "B/s") {
		t.Fatalf("bar output %q", out)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1023: "1023", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("%d: %q want %q", n, got, want)
		}
	}
}
