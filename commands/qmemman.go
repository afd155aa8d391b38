package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// qmemmanSocket is where qmemmand listens (setting qmemman-socket,
// env QVM_QMEMMAN_SOCKET).
func (env *Env) qmemmanSocket() string {
	if s := env.cfg.GetString("qmemman-socket"); s != "" {
		return s
	}
	return "/var/run/qubes/qmemman.sock"
}

// MemoryError: qmemmand could not free enough memory.
type MemoryError struct{ Name string }

func (e *MemoryError) Error() string {
	return fmt.Sprintf("Not enough memory to start domain '%s'", e.Name)
}

// requestMem asks qmemmand to free n bytes for qube name. On OK the
// returned release closes the connection, which is when qmemmand resumes
// balancing (after the domain exists). No qmemmand → a note (once per
// process) and a no-op release.
func (env *Env) requestMem(ctx context.Context, name string, n int64) (release func(), err error) {
	sock := env.qmemmanSocket()
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(dctx, "unix", sock)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			if !env.noQmemmanNoted {
				env.noQmemmanNoted = true
				env.warnf(env.progFor("qvm start"), "qmemmand is not running (no %s); starting without a memory request", sock)
			}
			return func() {}, nil
		}
		return nil, fmt.Errorf("Failed to connect to qmemman: %w", err)
	}
	uc := c.(*net.UnixConn)
	if _, err := uc.Write([]byte(strconv.FormatInt(n, 10) + "\n")); err != nil {
		uc.Close()
		return nil, fmt.Errorf("Failed to connect to qmemman: %w", err)
	}
	// qmemmand may wait for a balancing round; its answer comes in well
	// under a minute.
	_ = uc.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, _ := bufio.NewReader(uc).ReadString('\n')
	if strings.TrimSpace(line) != "OK" {
		uc.Close()
		return nil, &MemoryError{Name: name}
	}
	_ = uc.SetReadDeadline(time.Time{})
	return func() { uc.Close() }, nil
}
