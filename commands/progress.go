package commands

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress reports long work: a live bar on a terminal, a plain line at
// most once a second in a pipe, nothing with --quiet.
type progress interface {
	// Add counts n more bytes done.
	Add(n int64)
	// Label names what is being worked on (a qube, a volume).
	Label(s string)
	// Done ends the report.
	Done()
}

type progressMode int

const (
	progressAuto progressMode = iota
	progressPlain
	progressOff
)

// newProgress picks the report for the streams: bar on a TTY unless plain
// is asked for (--no-progress), nothing when off (--quiet).
func newProgress(env *Env, mode progressMode, verb string, total int64) progress {
	switch {
	case mode == progressOff || env.Verbosity() <= 0:
		return nopProgress{}
	case mode == progressAuto && env.IO.ErrIsTTY:
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(env.IO.Err),
			progressbar.OptionSetDescription(verb),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(env.IO.Err) }),
		)
		return &barProgress{bar: bar, verb: verb}
	}
	return &lineProgress{w: env.IO.Err, now: env.Now, verb: verb, total: total, start: env.Now()}
}

type nopProgress struct{}

func (nopProgress) Add(int64)    {}
func (nopProgress) Label(string) {}
func (nopProgress) Done()        {}

type barProgress struct {
	bar  *progressbar.ProgressBar
	verb string
}

func (b *barProgress) Add(n int64)    { _ = b.bar.Add64(n) }
func (b *barProgress) Label(s string) { b.bar.Describe(b.verb + " " + s) }
func (b *barProgress) Done()          { _ = b.bar.Finish() }

// lineProgress prints "verb 12.34% (done of total, rate) label" lines,
// throttled to one a second so logs stay readable.
type lineProgress struct {
	w           io.Writer
	now         func() time.Time
	verb, label string
	total, done int64
	start, last time.Time
	printed     bool
}

func (p *lineProgress) Add(n int64) {
	p.done += n
	if t := p.now(); !p.printed || t.Sub(p.last) >= time.Second {
		p.print(t)
	}
}

func (p *lineProgress) Label(s string) { p.label = s }

func (p *lineProgress) Done() {
	p.print(p.now())
}

func (p *lineProgress) print(t time.Time) {
	p.last, p.printed = t, true
	pct := 100.0
	if p.total > 0 {
		pct = float64(p.done) * 100 / float64(p.total)
	}
	rate := ""
	if el := t.Sub(p.start).Seconds(); el > 0 {
		rate = ", " + humanBytes(int64(float64(p.done)/el)) + "/s"
	}
	label := ""
	if p.label != "" {
		label = " " + p.label
	}
	fmt.Fprintf(p.w, "%s %.2f%% (%s of %s%s)%s\n", p.verb, pct, humanBytes(p.done), humanBytes(p.total), rate, label)
}

// humanBytes follows the stock size_to_human: bytes below 1024, else one
// decimal with KiB, MiB or GiB.
func humanBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB"} {
		f /= 1024
		if f < 1024 || u == "GiB" {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return ""
}
