package memd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Replies of the socket protocol (spec qmemman.md section 8).
const (
	ReplyOK         = "OK\n"
	ReplyFail       = "FAIL\n"
	ReplyInvalidArg = "INVALID_ARG\n"
)

// Serve answers memory requests on l, one connection after another as the
// reference's single-threaded server does: while a client holds the lock,
// the next ones wait in the listen queue. It returns when ctx ends.
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		d.handleConn(ctx, c)
	}
}

// pyWhitespace is what Python's bytes.strip() and split() treat as space.
const pyWhitespace = " \t\n\r\v\f"

// handleConn serves one client. The global lock taken for its request is
// held until the client closes the connection, so no balancing gives the
// freed memory away before the new domain exists.
func (d *Daemon) handleConn(ctx context.Context, c net.Conn) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	gotLock := false
	defer func() {
		if gotLock {
			d.mu.Unlock()
		}
	}()
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		msg := bytes.Trim(buf[:n], pyWhitespace)
		if len(msg) == 0 {
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				d.log.Debug("client read", "err", err)
			}
			d.log.Info("client disconnected, resuming membalance")
			if gotLock {
				d.forceRefresh = true
			}
			return
		}
		if gotLock {
			d.log.Warn("second request over qmemman.sock")
			return
		}
		d.mu.Lock()
		gotLock = true
		reply, err := d.request(ctx, msg, peerPid(c))
		if err != nil {
			d.log.Error("request failed", "request", string(msg), "err", err)
			return
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			d.log.Warn("reply to client", "err", err)
			return
		}
	}
}

// request classifies and runs one request (caller holds mu). An error ends
// the connection without a reply, as an exception does in the reference.
func (d *Daemon) request(ctx context.Context, msg []byte, peer int) (string, error) {
	// A qvm command on the embedded driver keeps its root until it exits,
	// so no session can be had while it waits for this answer: judge from
	// the last pass instead of waiting for the lock to time out.
	if rh, ok := d.host.(RootHolder); ok && peer > 0 {
		if rh.RootHeldBy(peer) {
			return d.requestFromLastPass(msg, peer)
		}
		// qvm start holds the root's lock without the driver and waits
		// for this answer: the pass may use its lock.
		if rh.RootLockedBy(peer) {
			d.log.Debug("requester holds the embedded root's lock: this request's sessions use it", "pid", peer)
			ctx = WithLentLock(ctx)
		}
	}
	if isDigits(msg) {
		size, err := strconv.ParseInt(string(msg), 10, 64)
		if err != nil {
			// Beyond int64: the reference's big int finds no donors and
			// answers FAIL; so does any size this large.
			size = 1 << 62
		}
		d.log.Info("balloon request", "size", size)
		ok, err := d.withPass(ctx, func(p *pass) (bool, error) { return p.doBalloon(size) })
		return okFail(ok), err
	}
	fields := strings.FieldsFunc(string(msg), func(r rune) bool { return strings.ContainsRune(pyWhitespace, r) })
	if strings.Contains(fields[0], ":") {
		req, err := parseDomRequest(fields)
		if err != nil {
			return "", err
		}
		d.log.Info("per-domain memory request", "request", string(msg))
		ok, err := d.withPass(ctx, func(p *pass) (bool, error) { return p.doBalloonDom(req) })
		return okFail(ok), err
	}
	return ReplyInvalidArg, nil
}

// requestFromLastPass answers a balloon request from the free memory the
// last pass saw (no ballooning is possible without a session); anything
// else fails.
func (d *Daemon) requestFromLastPass(msg []byte, peer int) (string, error) {
	if !isDigits(msg) {
		if fields := strings.FieldsFunc(string(msg), func(r rune) bool { return strings.ContainsRune(pyWhitespace, r) }); !strings.Contains(fields[0], ":") {
			return ReplyInvalidArg, nil
		}
		d.log.Warn("per-domain request from a process holding the embedded root: cannot balloon", "pid", peer)
		return ReplyFail, nil
	}
	size, err := strconv.ParseInt(string(msg), 10, 64)
	if err != nil {
		size = 1 << 62
	}
	ok := d.lastFreeOK && d.lastFree >= size+XenFreeMemMin
	d.log.Info("balloon request from a process holding the embedded root: answered from the last pass", "pid", peer, "size", size, "free", d.lastFree, "ok", ok)
	return okFail(ok), nil
}

// peerPid is the pid of the process at the other end of a Unix socket, 0
// when unknown.
func peerPid(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

func okFail(ok bool) string {
	if ok {
		return ReplyOK
	}
	return ReplyFail
}

// withPass runs f in a host session that is closed before the reply goes
// out, so the requester can use the (embedded) hypervisor connection.
func (d *Daemon) withPass(ctx context.Context, f func(*pass) (bool, error)) (bool, error) {
	p, err := d.open(ctx)
	if err != nil {
		return false, err
	}
	defer p.close()
	// The reference learns of new domains from xenstore events at once; we
	// list them, so a request first catches up with the host.
	if err := p.refreshDomainList(); err != nil {
		return false, err
	}
	return f(p)
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// parseDomRequest reads "id:bytes id:bytes ..." like the reference's
// dict((k, int(v)) ...): a repeated id keeps its first place and last value.
func parseDomRequest(fields []string) ([]DomRequest, error) {
	var out []DomRequest
	pos := map[string]int{}
	for _, f := range fields {
		id, v, ok := strings.Cut(f, ":")
		if !ok || strings.Contains(v, ":") {
			return nil, fmt.Errorf("per-domain request: %q is not id:bytes", f)
		}
		n, err := pyInt(v)
		if err != nil {
			return nil, fmt.Errorf("per-domain request: %q: %w", f, err)
		}
		if i, seen := pos[id]; seen {
			out[i].Mem = n
			continue
		}
		pos[id] = len(out)
		out = append(out, DomRequest{id, n})
	}
	return out, nil
}

// pyInt accepts what Python's int() does for a plain decimal: a sign and
// digits with single underscores between them.
func pyInt(s string) (int64, error) {
	t := strings.TrimLeft(s, "+-")
	if len(s)-len(t) > 1 || t == "" || strings.HasPrefix(t, "_") || strings.HasSuffix(t, "_") || strings.Contains(t, "__") {
		return 0, fmt.Errorf("invalid integer %q", s)
	}
	return strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
}
