package memd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultSocket is where qmemmand listens.
const DefaultSocket = "/var/run/qubes/qmemman.sock"

// StartRequest describes a qube about to start, for RequestSize.
type StartRequest struct {
	VirtMode  string // "pv", "pvh" or "hvm"
	MemoryMiB int64  // the memory property
	MaxMemMiB int64  // maxmem; 0 when balancing is off for the qube
	VCPUs     int64
	// StubdomMemMiB is the stubdom_mem property, 0 when unset.
	StubdomMemMiB int64
	// LinuxStubdom is the linux-stubdom feature (default true).
	LinuxStubdom bool
}

// RequestSize is the number of bytes a starting qube asks qmemmand for
// (spec start.md section 3). Every term is a whole number of bytes, so
// integer arithmetic gives the reference's float result exactly.
func RequestSize(r StartRequest) int64 {
	var stub int64
	if r.VirtMode == "hvm" {
		switch {
		case r.StubdomMemMiB != 0:
			stub = r.StubdomMemMiB
		case r.LinuxStubdom:
			stub = 128
		default:
			stub = 28
		}
		stub += 16 // video RAM
	}
	total := (r.MemoryMiB+stub)*MiB + 4*MiB + r.VCPUs*3*MiB/2
	mm := r.MaxMemMiB
	if mm == 0 {
		mm = r.MemoryMiB
	}
	if r.VirtMode != "pv" {
		total += mm * 8192
	}
	return total
}

// Grant is an answered request: while it is open qmemmand balances
// nothing, so the memory it freed stays free. Close it once the domain
// exists (or creating it failed).
type Grant struct{ conn net.Conn }

// Close releases qmemmand's lock.
func (g *Grant) Close() error { return g.conn.Close() }

// ErrNotEnoughMemory is returned when qmemmand answers anything but OK.
var ErrNotEnoughMemory = errors.New("not enough memory")

// ConnectError is a failure to reach qmemmand.
type ConnectError struct{ Err error }

func (e *ConnectError) Error() string { return "Failed to connect to qmemman: " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// RequestMemory asks qmemmand at socket to free bytes for a new domain.
// On success the returned Grant holds qmemmand's lock until closed; on a
// refusal the error wraps ErrNotEnoughMemory and the connection is closed.
func RequestMemory(ctx context.Context, socket string, bytes int64) (*Grant, error) {
	return request(ctx, socket, strconv.FormatInt(bytes, 10)+"\n")
}

// SetDomainsMemory asks qmemmand to bring the given domains to the given
// sizes (0: the domain's preferred memory), as before pausing a preloaded
// disposable. The Grant holds the lock like RequestMemory's.
func SetDomainsMemory(ctx context.Context, socket string, req []DomRequest) (*Grant, error) {
	if len(req) == 0 {
		return nil, errors.New("set domains memory: empty request")
	}
	parts := make([]string, len(req))
	for i, r := range req {
		if r.ID == "" || strings.ContainsAny(r.ID, ": \t\n\r\v\f") {
			return nil, fmt.Errorf("set domains memory: invalid domain id %q", r.ID)
		}
		parts[i] = r.ID + ":" + strconv.FormatInt(r.Mem, 10)
	}
	return request(ctx, socket, strings.Join(parts, " ")+"\n")
}

func request(ctx context.Context, socket, msg string) (*Grant, error) {
	var dialer net.Dialer // Go sockets are close-on-exec
	conn, err := dialer.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, &ConnectError{err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := conn.Write([]byte(msg)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmemman request: %w", err)
	}
	buf := make([]byte, 1024)
	n, err := conn.Read(buf)
	if ctx.Err() != nil {
		conn.Close()
		return nil, ctx.Err()
	}
	reply := strings.Trim(string(buf[:n]), pyWhitespace)
	if reply != "OK" {
		conn.Close()
		if n == 0 && err != nil {
			return nil, fmt.Errorf("%w: qmemman closed the connection without an answer", ErrNotEnoughMemory)
		}
		return nil, fmt.Errorf("%w: qmemman answered %q", ErrNotEnoughMemory, reply)
	}
	return &Grant{conn: conn}, nil
}
