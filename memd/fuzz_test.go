package memd

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzAlgoInput: any document either fails to decode with an InputError
// or gives valid JSON output; the algorithm never panics.
func FuzzAlgoInput(f *testing.F) {
	f.Add([]byte(`{"xen_free_mem": 0, "domains": [{"domid": "1", "mem_actual": 100, "mem_max": 4194304000, "mem_used": 1048576000}], "balloon_sizes": [0, 5]}`))
	f.Add([]byte(`{"xen_free_mem": -52428800, "domains": [{"domid": "0", "mem_actual": 1, "mem_max": 1, "mem_used": 9007199254740992}, {"domid": "2", "mem_actual": 0, "mem_max": 0, "mem_used": null, "no_progress": true}]}`))
	f.Add([]byte(`{"xen_free_mem": 9007199254740992, "domains": [{"domid": "5", "mem_actual": -9007199254740992, "mem_max": -1, "mem_used": -9007199254740992}], "balloon_sizes": [-9007199254740992]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		xf, doms, sizes, err := DecodeAlgoInput(bytes.NewReader(data))
		if err != nil {
			return
		}
		out := DefaultParams().RunAlgo(xf, doms, sizes)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON output %s", out)
		}
	})
}

// FuzzRequest: the socket request parser never panics and answers one of
// the protocol's replies or an error.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{"123", "1:0 2:5", "a:b", "1:+5_0", "::", "x", "1:99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		msg = bytes.Trim(msg, pyWhitespace)
		if len(msg) == 0 {
			return
		}
		h := twoGuests()
		d := newTestDaemon(t, h)
		d.opts.Delay = 0
		d.mu.Lock()
		defer d.mu.Unlock()
		if isDigits(msg) {
			return // balloon requests are covered by the protocol tests
		}
		reply, err := d.request(t.Context(), msg, 0)
		if err == nil && reply != ReplyOK && reply != ReplyFail && reply != ReplyInvalidArg {
			t.Fatalf("reply %q", reply)
		}
	})
}

// FuzzDomRequest: a per-domain request that parses names each domain
// once (a repeated id keeps its first place), and a balloon size or a
// per-domain request never panics the daemon, digits included.
func FuzzDomRequest(f *testing.F) {
	for _, s := range []string{"1048576", "  3221225472 ", "9999999999999", "1:0", "1:1400000000 2:0",
		"12 1:5", "1:abc", "77:1000000000", "1:2:3", "1:1_000 1:+5", "99999999999999999999999999", "\x00:\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := bytes.Trim(data, pyWhitespace)
		if len(msg) == 0 {
			return
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
		d := newTestDaemon(t, twoGuests())
		d.opts.Delay = 0
		d.mu.Lock()
		defer d.mu.Unlock()
		reply, err := d.request(t.Context(), msg, 0)
		if err == nil && reply != ReplyOK && reply != ReplyFail && reply != ReplyInvalidArg {
			t.Fatalf("reply %q to %q", reply, msg)
		}
	})
}
