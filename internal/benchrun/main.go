// Command benchrun measures qvm as a user runs it (whole processes, wall
// time and peak RSS) next to the reference tools where they can run here,
// and writes BENCHMARKS.md. `make bench` runs it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// section is one block of BENCHMARKS.md.
type section struct {
	title string
	run   func(r *runner) (string, error)
}

type runner struct {
	qvm  string // path of the qvm binary
	tmp  string
	reps int
	// restoreReps is how many times each backup restore runs, the median
	// reported (-restore-reps).
	restoreReps int
}

func main() {
	out := flag.String("out", "BENCHMARKS.md", "file to write")
	qvm := flag.String("qvm", "bin/qvm", "qvm binary to measure")
	reps := flag.Int("reps", 30, "repetitions per measurement")
	restoreReps := flag.Int("restore-reps", 3, "runs of each backup restore (median reported)")
	only := flag.String("only", "", "run only the sections whose title contains this")
	flag.Parse()
	tmp, err := os.MkdirTemp("", "qvm-bench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(tmp)
	abs, _ := filepath.Abs(*qvm)
	if *restoreReps < 1 {
		fail(fmt.Errorf("-restore-reps %d: want at least 1", *restoreReps))
	}
	r := &runner{qvm: abs, tmp: tmp, reps: *reps, restoreReps: *restoreReps}
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` (internal/benchrun) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %s, %d cores, %s RAM, %s, %s.\n\n", cpuModel(), runtime.NumCPU(), memTotal(), runtime.Version(), kernel())
	fmt.Fprintf(&b, "Times are the median of %d runs of the whole process (start-up included); RSS is the largest peak resident set of those runs.\n\n", *reps)
	for _, s := range sections {
		if *only != "" && !strings.Contains(s.title, *only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s\n", s.title)
		md, err := s.run(r)
		if err != nil {
			fail(fmt.Errorf("%s: %w", s.title, err))
		}
		fmt.Fprintf(&b, "## %s\n\n%s\n", s.title, md)
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s\n", *out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchrun:", err)
	os.Exit(1)
}

type result struct {
	median time.Duration
	maxRSS int64 // KiB
}

// measure runs the command reps times; argsFor gives the arguments of run i.
// Peak RSS comes from GNU time, which forks for real: Go starts children
// with vfork, and such a child's rusage keeps the parent's high-water mark
// across exec, so the runner's own heap would hide the command's.
func (r *runner) measure(env []string, argsFor func(i int) []string) (result, error) {
	gnuTime := "/usr/bin/time"
	if _, err := os.Stat(gnuTime); err != nil {
		return result{}, fmt.Errorf("GNU time (%s) is missing: install the Debian package time", gnuTime)
	}
	rssFile := filepath.Join(r.tmp, "rss")
	defer os.Remove(rssFile)
	var times []time.Duration
	var rss int64
	for i := 0; i < r.reps; i++ {
		args := append([]string{gnuTime, "-q", "-f", "%M", "-o", rssFile}, argsFor(i)...)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		el := time.Since(start)
		if err != nil {
			return result{}, fmt.Errorf("%v: %v\n%s", args[6:], err, out)
		}
		times = append(times, el)
		if data, err := os.ReadFile(rssFile); err == nil {
			var k int64
			fmt.Sscan(string(data), &k)
			rss = max(rss, k)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return result{median: times[len(times)/2], maxRSS: rss}, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int64
			fmt.Sscan(rest, &kb)
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func kernel() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "Linux " + strings.TrimSpace(string(data))
}
