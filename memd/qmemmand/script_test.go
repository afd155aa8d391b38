package qmemmand

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/qvm-dev/qvm/internal/scripttest"
	"golang.org/x/sys/unix"

	"github.com/qvm-dev/qvm/memd/virthost"
)

// TestMain lets the test binary act as qmemmand for the scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"qmemmand": func() { os.Exit(Main(os.Args, IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})) },
		// The libvirt helper, found on PATH as an installed one would be.
		"qmemmand-virt": func() { os.Exit(virthost.ServeHelperMain(os.Args[len(os.Args)-1])) },
	})
}

// TestScript runs testdata/script/*.txtar: qmemmand as a user runs it.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "embedded": // libvirt's embedded QEMU driver can run here
				if os.Geteuid() != 0 {
					return false, nil
				}
				if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"); err != nil {
					return false, nil
				}
				_, err := exec.Command("getent", "passwd", "libvirt-qemu").Output()
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": scripttest.Exitcode,
			// waitsock PATH: wait (up to 20 s) until a Unix socket accepts.
			"waitsock": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: waitsock PATH")
				}
				p := ts.MkAbs(args[0])
				for i := 0; i < 400; i++ {
					if c, err := net.Dial("unix", p); err == nil {
						c.Close()
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				ts.Fatalf("%s does not accept connections", p)
			},
			// termsock PATH: send SIGTERM to the process listening on a Unix
			// socket (found by its peer credentials), as systemd stops it.
			"termsock": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: termsock PATH")
				}
				c, err := net.Dial("unix", ts.MkAbs(args[0]))
				ts.Check(err)
				raw, err := c.(*net.UnixConn).SyscallConn()
				ts.Check(err)
				var cred *unix.Ucred
				ts.Check(raw.Control(func(fd uintptr) {
					cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
				}))
				ts.Check(err)
				c.Close()
				ts.Check(unix.Kill(int(cred.Pid), unix.SIGTERM))
			},
			// notifylisten PATH FILE: receive sd_notify datagrams on PATH
			// (in the background) and append each, one a line, to FILE.
			"notifylisten": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: notifylisten PATH FILE")
				}
				l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ts.MkAbs(args[0]), Net: "unixgram"})
				ts.Check(err)
				out, err := os.OpenFile(ts.MkAbs(args[1]), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
				ts.Check(err)
				ts.Defer(func() { l.Close(); out.Close() })
				go func() {
					buf := make([]byte, 4096)
					for {
						n, err := l.Read(buf)
						if err != nil {
							return
						}
						out.Write(append(buf[:n:n], '\n'))
					}
				}()
			},
			// memreq SOCKET MSG: send MSG plus "\n", print the reply bytes
			// (quoted) on stdout and close.
			"memreq": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) < 2 {
					ts.Fatalf("usage: memreq SOCKET MSG...")
				}
				c, err := net.Dial("unix", ts.MkAbs(args[0]))
				ts.Check(err)
				defer c.Close()
				_, err = c.Write([]byte(strings.Join(args[1:], " ") + "\n"))
				ts.Check(err)
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				buf := make([]byte, 1024)
				n, _ := c.Read(buf)
				ts.Stdout().Write([]byte("reply " + strings.ReplaceAll(string(buf[:n]), "\n", `\n`) + "\n"))
			},
		},
	})
}
