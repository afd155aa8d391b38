package virtclient

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/qvm-dev/qvm/memd"
)

// TestMain makes the test binary a fake helper speaking the pipe protocol:
// it reports its pid as the domain's memory, and sends an event line
// before every "domains" answer.
func TestMain(m *testing.M) {
	if os.Getenv("FAKE_HELPER") != "" {
		enc := json.NewEncoder(os.Stdout)
		if os.Getenv("FAKE_HELPER") == "fail" {
			enc.Encode(Response{Error: "cannot connect"})
			os.Exit(0)
		}
		enc.Encode(Response{URI: "fake:///", Embedded: os.Getenv("FAKE_HELPER") == "embedded"})
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			var req Request
			json.Unmarshal(sc.Bytes(), &req)
			switch req.Op {
			case "domains":
				enc.Encode(Response{Event: true})
				enc.Encode(Response{Domains: []memd.DomainFacts{{ID: "1", MemCurrent: int64(os.Getpid())}}})
			case "hostmem":
				enc.Encode(Response{Total: 100, Free: 40})
			case "set":
				if req.ID == "die" {
					os.Exit(1)
				}
				enc.Encode(Response{Error: fmt.Sprintf("no domain %s", req.ID)})
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func fake(mode string) *Host {
	return New(Options{Argv: []string{os.Args[0]}, Env: []string{"FAKE_HELPER=" + mode}})
}

func pidOf(t *testing.T, s memd.Session) int64 {
	t.Helper()
	d, err := s.Domains(context.Background())
	if err != nil || len(d) != 1 {
		t.Fatalf("Domains = %v, %v", d, err)
	}
	return d[0].MemCurrent
}

func TestHeldHelperReusedAndEvents(t *testing.T) {
	h := fake("held")
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p1 := pidOf(t, s)
	if total, free, err := s.HostMem(ctx); err != nil || total != 100 || free != 40 {
		t.Fatalf("HostMem = %d %d %v", total, free, err)
	}
	if err := s.SetTarget(ctx, "9", 1, false); err == nil || err.Error() != "no domain 9" {
		t.Fatalf("helper error not passed on: %v", err)
	}
	s.Close()
	events := make(chan struct{}, 4)
	go h.Watch(ctx, func() { events <- struct{}{} })
	s, _ = h.Open(ctx)
	if p2 := pidOf(t, s); p2 != p1 {
		t.Errorf("second session in helper %d, want the held %d", p2, p1)
	}
	select {
	case <-events:
	case <-time.After(5 * time.Second):
		t.Fatal("event line not delivered to Watch")
	}
	// The helper dies: the next Open starts a new one.
	if err := s.SetTarget(ctx, "die", 1, false); err == nil {
		t.Fatal("dead helper: no error")
	}
	s.Close()
	s, err = h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p3 := pidOf(t, s); p3 == p1 {
		t.Error("still the dead helper")
	}
}

func TestEmbeddedHelperPerSession(t *testing.T) {
	h := fake("embedded")
	ctx := context.Background()
	s, err := h.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p1 := pidOf(t, s)
	s.Close()
	s, _ = h.Open(ctx)
	if p2 := pidOf(t, s); p2 == p1 {
		t.Error("embedded sessions share a helper")
	}
	s.Close()
	if err := h.Watch(ctx, func() {}); err != ErrNoEvents {
		t.Errorf("Watch = %v, want ErrNoEvents", err)
	}
}

func TestHelperFailures(t *testing.T) {
	if _, err := fake("fail").Open(context.Background()); err == nil || err.Error() != "cannot connect" {
		t.Errorf("Open = %v, want the helper's error", err)
	}
	if _, err := New(Options{}).Open(context.Background()); err == nil {
		t.Error("no helper configured: no error")
	}
	if _, err := New(Options{Argv: []string{"/nonexistent/qmemmand-virt"}}).Open(context.Background()); err == nil {
		t.Error("missing helper binary: no error")
	}
}

// qvm's helper (qvm-virt) holds the embedded driver for the qvm that
// asks for memory: its parent counts as the holder.
func TestParentPid(t *testing.T) {
	if got := parentPid(os.Getpid()); got != os.Getppid() {
		t.Fatalf("parentPid(self) = %d, want %d", got, os.Getppid())
	}
	if got := parentPid(1 << 30); got != 0 {
		t.Fatalf("parentPid(no such pid) = %d", got)
	}
}
