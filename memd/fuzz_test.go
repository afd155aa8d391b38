package memd

import (
	"bytes"
	"encoding/json"
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
