package commands

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The clock is injected (Env.Now): a rule added with expire=+60 is listed
// until the clock passes it, then not, without sleeping.
func TestFirewallExpiryMovesWithTheClock(t *testing.T) {
	t.Setenv("QVM_STATE_DIR", t.TempDir())
	t.Setenv("QVM_CONFIG", "/nonexistent")
	clock := time.Unix(1800000000, 0)
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code := MainContext(context.Background(), append([]string{"qvm"}, args...), IO{In: strings.NewReader(""), Out: &out, Err: &errb},
			func() time.Time { return clock })
		if code != 0 {
			t.Fatalf("qvm %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	run("init", "--reflink", "no")
	run("create", "-C", "TemplateVM", "-l", "black", "tpl")
	run("prefs", "--global", "default_template", "tpl")
	run("create", "-l", "green", "work")
	run("firewall", "work", "add", "accept", "10.1.2.3", "tcp", "22", "expire=+60")
	if got := run("firewall", "work", "--raw"); !strings.Contains(got, "expire=1800000060") {
		t.Fatalf("expire=+60 not converted from the injected clock:\n%s", got)
	}
	clock = clock.Add(30 * time.Second)
	if got := run("firewall", "work"); !strings.Contains(got, "+30s") {
		t.Errorf("after 30 s:\n%s", got)
	}
	clock = clock.Add(31 * time.Second)
	if got := run("firewall", "work", "--raw"); got != "action=accept\n" {
		t.Errorf("after 61 s the rule should be gone:\n%s", got)
	}
}

// 30 processes add a rule each to the same qube at once: no rule is lost,
// and the file stays valid.
func TestFirewallConcurrentAdds(t *testing.T) {
	dir := t.TempDir()
	runQvm(t, dir, "init", "--reflink", "no")
	runQvm(t, dir, "create", "-C", "StandaloneVM", "-l", "red", "work")
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if out, err := qvmProc(dir, "firewall", "work", "add", "accept", fmt.Sprintf("10.0.0.%d", i), "tcp", "22").CombinedOutput(); err != nil {
				errs <- fmt.Errorf("add %d: %v %s", i, err, out)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	raw := runQvm(t, dir, "firewall", "work", "--raw")
	for i := 0; i < n; i++ {
		if !strings.Contains(raw, fmt.Sprintf("dst4=10.0.0.%d/32 ", i)) {
			t.Errorf("rule %d lost:\n%s", i, raw)
		}
	}
	if got := strings.Count(raw, "\n"); got != n+1 {
		t.Errorf("%d rules, want %d", got, n+1)
	}
}
