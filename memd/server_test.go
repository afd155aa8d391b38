package memd

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// startDaemon serves d on a socket in a temporary directory.
func startDaemon(t *testing.T, d *Daemon) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmemman.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

func newTestDaemon(t *testing.T, h *simHost) *Daemon {
	return NewDaemon(h, Options{Params: DefaultParams(), RunDir: t.TempDir(), Delay: time.Millisecond})
}

// twoGuests: 8 GiB host, two guests using 1 GiB each but holding 3 GiB.
func twoGuests() *simHost {
	h := &simHost{total: 8192 * mb}
	h.add("1", 3072*mb, 4096*mb, 1024*mb)
	h.add("2", 3072*mb, 4096*mb, 1024*mb)
	return h
}

// rawRequest sends msg and returns the reply bytes, keeping the connection.
func rawRequest(t *testing.T, sock, msg string) (string, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read reply to %q: %v", msg, err)
	}
	return string(buf[:n]), c
}

func TestProtocolReplies(t *testing.T) {
	h := twoGuests()
	sock := startDaemon(t, newTestDaemon(t, h))
	cases := []struct{ msg, want string }{
		{"1048576\n", "OK\n"},          // already free
		{"  3221225472 \n", "OK\n"},    // 3 GiB: the guests balloon down
		{"9999999999999\n", "FAIL\n"},  // more than the host has
		{"hello\n", "INVALID_ARG\n"},   // neither form
		{"-5\n", "INVALID_ARG\n"},      // not all digits, no colon
		{"1:0\n", "OK\n"},              // per-domain: preferred memory
		{"1:1400000000 2:0\n", "OK\n"}, // several domains
		{"12 1:5\n", "INVALID_ARG\n"},  // first token decides
		{"1:abc\n", ""},                // the reference raises: no reply
		{"77:1000000000\n", ""},        // unknown domain: no reply
		{"1:2:3\n", ""},                // not id:value
		{"1048576", "OK\n"},            // no newline needed
	}
	for _, c := range cases {
		got, conn := rawRequest(t, sock, c.msg)
		conn.Close()
		if got != c.want {
			t.Errorf("request %q: reply %q, want %q", c.msg, got, c.want)
		}
	}
	if cur := h.current("1"); cur >= 3072*mb {
		t.Errorf("guest 1 still at %d after the balloon request", cur)
	}
}

func TestBalloonRequestFreesMemory(t *testing.T) {
	h := twoGuests()
	sock := startDaemon(t, newTestDaemon(t, h))
	size := int64(3 * 1024 * mb)
	g, err := RequestMemory(context.Background(), sock, size)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	free := 8192*mb - h.current("1") - h.current("2")
	if free < size+XenFreeMemMin {
		t.Errorf("free %d after OK, want at least %d", free, size+XenFreeMemMin)
	}
}

func TestRequestFailures(t *testing.T) {
	h := twoGuests()
	sock := startDaemon(t, newTestDaemon(t, h))
	_, err := RequestMemory(context.Background(), sock, 7*1024*mb)
	if !errors.Is(err, ErrNotEnoughMemory) {
		t.Errorf("7 GiB of 8: err %v, want ErrNotEnoughMemory", err)
	}
	var ce *ConnectError
	_, err = RequestMemory(context.Background(), filepath.Join(t.TempDir(), "none.sock"), 1)
	if !errors.As(err, &ce) || ce.Error()[:29] != "Failed to connect to qmemman:" {
		t.Errorf("no daemon: err %v, want ConnectError", err)
	}
	if _, err := SetDomainsMemory(context.Background(), sock, []DomRequest{{"1 2", 5}}); err == nil {
		t.Error("id with a space accepted")
	}
}

// A second client waits until the first closes its connection, and no
// balancing happens while the first holds the lock.
func TestLockHeldUntilClose(t *testing.T) {
	h := twoGuests()
	d := newTestDaemon(t, h)
	sock := startDaemon(t, d)
	g, err := RequestMemory(context.Background(), sock, 1024*mb)
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		g2, err := RequestMemory(context.Background(), sock, 1024*mb)
		if err == nil {
			g2.Close()
		}
		second <- err
	}()
	balanced := make(chan error, 1)
	go func() { balanced <- d.Balance(context.Background()) }()
	select {
	case err := <-second:
		t.Fatalf("second client answered (%v) while the first holds the lock", err)
	case err := <-balanced:
		t.Fatalf("balance ran (%v) while a client holds the lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	g.Close()
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("second client: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second client still waiting after the first closed")
	}
	if err := <-balanced; err != nil {
		t.Fatal(err)
	}
}

// A second request on the same connection ends it (and frees the lock).
func TestSecondRequestOnConnection(t *testing.T) {
	h := twoGuests()
	sock := startDaemon(t, newTestDaemon(t, h))
	got, c := rawRequest(t, sock, "1024\n")
	if got != "OK\n" {
		t.Fatalf("first reply %q", got)
	}
	c.Write([]byte("1024\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 16))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("second request: read %d %v, want EOF", n, err)
	}
	c.Close()
	g, err := RequestMemory(context.Background(), sock, 1024)
	if err != nil {
		t.Fatalf("lock not released: %v", err)
	}
	g.Close()
}

// The host session is closed before the reply, so an embedded-driver
// requester can connect while it holds the grant.
func TestSessionClosedBeforeReply(t *testing.T) {
	h := twoGuests()
	sock := startDaemon(t, newTestDaemon(t, h))
	g, err := RequestMemory(context.Background(), sock, 2048*mb)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h.mu.Lock()
	open := h.open
	h.mu.Unlock()
	if open != 0 {
		t.Errorf("%d host sessions open while the client holds its grant", open)
	}
}

func TestSetDomainsMemory(t *testing.T) {
	h := twoGuests()
	sock := startDaemon(t, newTestDaemon(t, h))
	g, err := SetDomainsMemory(context.Background(), sock, []DomRequest{{"1", 2000 * mb}, {"2", 0}})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if c := h.current("1"); c != 2000*mb {
		t.Errorf("domain 1 at %d, want %d", c, 2000*mb)
	}
	if c := h.current("2"); c != DefaultParams().PrefMem(dom("2", 1024*mb, 4096*mb, 0)) {
		t.Errorf("domain 2 at %d, want its preferred memory", c)
	}
	// A stuck domain: FAIL after the 3 s window (30 rounds of Delay).
	h.doms[0].stuck = true
	if _, err := SetDomainsMemory(context.Background(), sock, []DomRequest{{"1", 500 * mb}}); !errors.Is(err, ErrNotEnoughMemory) {
		t.Errorf("stuck domain: err %v, want FAIL", err)
	}
}

// Stuck donors: the ring check gives up after CHECK_PERIOD rounds.
func TestBalloonGivesUpOnStuckDonors(t *testing.T) {
	h := twoGuests()
	h.doms[0].stuck, h.doms[1].stuck = true, true
	d := newTestDaemon(t, h)
	sock := startDaemon(t, d)
	_, err := RequestMemory(context.Background(), sock, 3*1024*mb)
	if !errors.Is(err, ErrNotEnoughMemory) {
		t.Fatalf("err %v, want FAIL", err)
	}
	for _, dom := range d.Domains() {
		if !dom.NoProgress {
			t.Errorf("domain %s not marked no_progress", dom.ID)
		}
	}
}

func TestRequestSizeVectors(t *testing.T) {
	cases := []struct {
		r    StartRequest
		want int64
	}{
		{StartRequest{VirtMode: "pvh", MemoryMiB: 400, MaxMemMiB: 4000, VCPUs: 2, LinuxStubdom: true}, 459538432},
		{StartRequest{VirtMode: "pvh", MemoryMiB: 400, MaxMemMiB: 0, VCPUs: 2, LinuxStubdom: true}, 430047232},
		{StartRequest{VirtMode: "pv", MemoryMiB: 400, MaxMemMiB: 4000, VCPUs: 2, LinuxStubdom: true}, 426770432},
		{StartRequest{VirtMode: "hvm", MemoryMiB: 400, MaxMemMiB: 0, VCPUs: 2, LinuxStubdom: true}, 581042176},
		{StartRequest{VirtMode: "hvm", MemoryMiB: 400, MaxMemMiB: 4000, VCPUs: 2, LinuxStubdom: false}, 505675776},
		{StartRequest{VirtMode: "hvm", MemoryMiB: 400, MaxMemMiB: 0, VCPUs: 2, StubdomMemMiB: 64, LinuxStubdom: true}, 513933312},
		{StartRequest{VirtMode: "pvh", MemoryMiB: 4096, MaxMemMiB: 8192, VCPUs: 4, LinuxStubdom: true}, 4372561920},
		{StartRequest{VirtMode: "hvm", MemoryMiB: 2048, MaxMemMiB: 0, VCPUs: 1, LinuxStubdom: true}, 2321022976},
	}
	for _, c := range cases {
		if got := RequestSize(c.r); got != c.want {
			t.Errorf("%+v: %d, want %d", c.r, got, c.want)
		}
	}
}
