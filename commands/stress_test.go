package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/core"
)

// stressConfig is read from the environment so `make stress` can run the
// same test longer and wider than `make test` does:
//
//	QVM_STRESS_TIME     how long the writers run (default 4s)
//	QVM_STRESS_WORKERS  writer processes at once (default 8)
//	QVM_STRESS_REPORT   file the counts are written to as JSON
type stressConfig struct {
	dur     time.Duration
	workers int
	report  string
}

func stressFromEnv(t *testing.T) stressConfig {
	c := stressConfig{dur: 4 * time.Second, workers: 8, report: os.Getenv("QVM_STRESS_REPORT")}
	if s := os.Getenv("QVM_STRESS_TIME"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("QVM_STRESS_TIME: %v", err)
		}
		c.dur = d
	}
	if s := os.Getenv("QVM_STRESS_WORKERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 64 {
			t.Fatalf("QVM_STRESS_WORKERS=%q: want 1..64", s)
		}
		c.workers = n
	}
	return c
}

// stressQube is what a worker expects of one of its qubes, from the
// commands that reported success.
type stressQube struct {
	memory  int64 // 0: never set
	private int64 // bytes; 0: never resized
}

// StressResult is the record `make stress` keeps in RELIABILITY.md.
type StressResult struct {
	Workers     int            `json:"workers"`
	Seconds     float64        `json:"seconds"`
	Ops         map[string]int `json:"ops"`
	OpsTotal    int            `json:"ops_total"`
	Reads       int64          `json:"reads"`
	LsRuns      int64          `json:"ls_runs"`
	FinalQubes  int            `json:"final_qubes"`
	Failures    int            `json:"failures"`
	TornReads   int64          `json:"torn_reads"`
	LostChanges int            `json:"lost_changes"`
}

// TestStress runs writer processes doing create, clone, prefs, remove and
// volume resize on their own qubes (all under the one qubes.xml lock) while
// readers parse qubes.xml and run qvm ls. Afterwards every change that
// reported success is in the file, the file validates, no reader saw a torn
// document and no command failed. Each worker owns its qubes, so its own
// sequence of successes says exactly what the final state must hold.
func TestStress(t *testing.T) {
	cfg := stressFromEnv(t)
	dir := t.TempDir()
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "create", "-C", "TemplateVM", "-l", "black", "tpl")
	xmlPath := filepath.Join(dir, "qubes.xml")

	var (
		mu       sync.Mutex
		ops      = map[string]int{}
		failures []string
		reads    atomic.Int64
		lsRuns   atomic.Int64
		torn     atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		} else {
			failures = append(failures, "")
		}
	}
	deadline := time.Now().Add(cfg.dur)
	stop := make(chan struct{})

	// Readers: the file on disk is always a whole document (rename is
	// atomic), and qvm ls under its shared lock always loads.
	var readers sync.WaitGroup
	for r := 0; r < 2; r++ {
		readers.Add(1)
		go func(r int) {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if r == 0 {
					data, err := os.ReadFile(xmlPath)
					if err != nil {
						fail("read qubes.xml: %v", err)
						continue
					}
					if _, err := core.Parse(data, xmlPath, dir, core.Host{}); err != nil {
						torn.Add(1)
						fail("torn qubes.xml read (%d bytes): %v", len(data), err)
					}
					reads.Add(1)
					time.Sleep(2 * time.Millisecond)
					continue
				}
				if out, err := qvmProc(dir, "ls", "--raw-list").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("tpl\n")) {
					fail("qvm ls during the run: %v %s", err, out)
				}
				lsRuns.Add(1)
			}
		}(r)
	}

	expect := make([]map[string]*stressQube, cfg.workers)
	var writers sync.WaitGroup
	for w := 0; w < cfg.workers; w++ {
		expect[w] = map[string]*stressQube{}
		writers.Add(1)
		go func(w int) {
			defer writers.Done()
			rng := rand.New(rand.NewSource(int64(w) + 1))
			mine := expect[w]
			next := 0
			run := func(op string, args ...string) bool {
				out, err := qvmProc(dir, args...).CombinedOutput()
				mu.Lock()
				ops[op]++
				mu.Unlock()
				if err != nil {
					fail("worker %d: qvm %v: %v\n%s", w, args, err, out)
					return false
				}
				return true
			}
			names := func() []string {
				var n []string
				for k := range mine {
					n = append(n, k)
				}
				sort.Strings(n)
				return n
			}
			for time.Now().Before(deadline) {
				have := names()
				choice := rng.Intn(10)
				if len(have) == 0 {
					choice = 0
				}
				switch {
				case choice < 3 && len(have) < 6: // create
					name := fmt.Sprintf("w%d-%d", w, next)
					next++
					if run("create", "create", "-l", "red", "-t", "tpl", name) {
						mine[name] = &stressQube{}
					}
				case choice < 4 && len(have) < 6: // clone
					src := have[rng.Intn(len(have))]
					name := fmt.Sprintf("w%d-%d", w, next)
					next++
					if run("clone", "clone", src, name) {
						q := *mine[src]
						mine[name] = &q
					}
				case choice < 7: // prefs
					name := have[rng.Intn(len(have))]
					mem := int64(400 + rng.Intn(4000))
					if run("prefs", "prefs", name, "memory", strconv.FormatInt(mem, 10)) {
						mine[name].memory = mem
					}
				case choice < 8: // volume resize (grow only)
					name := have[rng.Intn(len(have))]
					q := mine[name]
					size := q.private
					if size == 0 {
						size = 2 << 30
					}
					size += int64(1+rng.Intn(16)) << 20
					if run("resize", "volume", "resize", name+":private", strconv.FormatInt(size, 10)) {
						q.private = size
					}
				default: // remove
					name := have[rng.Intn(len(have))]
					if run("remove", "remove", "-f", name) {
						delete(mine, name)
					}
				}
			}
		}(w)
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	// The final state: exactly the qubes the workers expect, with their values.
	data, err := os.ReadFile(xmlPath)
	if err != nil {
		t.Fatal(err)
	}
	app, err := core.Parse(data, xmlPath, dir, core.Host{})
	if err != nil {
		t.Fatalf("final qubes.xml does not validate: %v", err)
	}
	lost := 0
	want := map[string]bool{"dom0": true, "tpl": true}
	for w := range expect {
		for name, q := range expect[w] {
			want[name] = true
			d, err := app.Domain(name)
			if err != nil {
				t.Errorf("%s: created and not removed, but missing: %v", name, err)
				lost++
				continue
			}
			if q.memory != 0 {
				if v, _ := app.Get(d, "memory"); v.Int() != q.memory {
					t.Errorf("%s: memory %s, want %d (a successful prefs lost)", name, v, q.memory)
					lost++
				}
			}
			if q.private != 0 {
				if v := d.Volume("private"); v == nil || v.Size != q.private {
					t.Errorf("%s: private size %v, want %d (a successful resize lost)", name, v, q.private)
					lost++
				} else if fi, err := os.Stat(filepath.Join(dir, "appvms", name, "private.img")); err != nil || fi.Size() != q.private {
					t.Errorf("%s: private.img %v, want %d bytes", name, err, q.private)
					lost++
				}
			}
		}
	}
	for _, d := range app.Domains() {
		if !want[d.Name()] {
			t.Errorf("%s: in qubes.xml although its removal reported success", d.Name())
			lost++
		}
	}
	// Nothing left over for qvm check to name.
	if out, err := qvmProc(dir, "check").CombinedOutput(); err != nil {
		t.Errorf("qvm check after the run: %v\n%s", err, out)
	}
	for _, f := range failures {
		if f != "" {
			t.Error(f)
		}
	}
	res := StressResult{Workers: cfg.workers, Seconds: cfg.dur.Seconds(), Ops: ops, Reads: reads.Load(), LsRuns: lsRuns.Load(),
		FinalQubes: len(app.Domains()), Failures: len(failures), TornReads: torn.Load(), LostChanges: lost}
	for _, n := range ops {
		res.OpsTotal += n
	}
	t.Logf("stress: %d writers for %s: %d operations %v, %d file reads, %d qvm ls, %d qubes at the end, %d failures, %d torn reads, %d lost changes",
		res.Workers, cfg.dur, res.OpsTotal, ops, res.Reads, res.LsRuns, res.FinalQubes, res.Failures, res.TornReads, res.LostChanges)
	if res.OpsTotal < cfg.workers {
		t.Errorf("only %d operations ran", res.OpsTotal)
	}
	if cfg.report != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.report, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}
