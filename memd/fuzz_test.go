package memd

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A request on qmemman.sock, whatever its bytes, gets one of the three
// replies or ends the connection with an error (as the reference's
// exception does); it never panics, and a per-domain request names each
// domain once.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{"1048576", "  3221225472 ", "9999999999999", "hello", "-5", "1:0", "1:1400000000 2:0",
		"12 1:5", "1:abc", "77:1000000000", "1:2:3", "1:1_000 1:+5", "99999999999999999999999999", "\x00:\x00"} {
		f.Add([]byte(s))
	}
	h := twoGuests()
	d := NewDaemon(h, Options{Params: DefaultParams(), RunDir: f.TempDir(), Delay: time.Millisecond})
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := []byte(strings.Trim(string(data), pyWhitespace))
		if len(msg) == 0 {
			return // the connection handler treats this as the client leaving
		}
		fields := strings.FieldsFunc(string(msg), func(r rune) bool { return strings.ContainsRune(pyWhitespace, r) })
		if req, err := parseDomRequest(fields); err == nil {
			seen := map[string]bool{}
			for _, r := range req {
				if seen[r.ID] {
					t.Fatalf("domain %q twice in %v", r.ID, req)
				}
				seen[r.ID] = true
			}
		}
		d.mu.Lock()
		reply, err := d.request(context.Background(), msg)
		d.mu.Unlock()
		if err != nil {
			return
		}
		switch reply {
		case ReplyOK, ReplyFail, ReplyInvalidArg:
		default:
			t.Fatalf("reply %q to %q", reply, msg)
		}
	})
}
