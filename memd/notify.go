package memd

import (
	"net"
	"os"
)

// SdNotify sends state (e.g. "READY=1") to systemd's $NOTIFY_SOCKET; a
// leading "@" names an abstract socket. Without the variable it does
// nothing, so the daemon runs the same outside systemd.
func SdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
