package backup

import (
	"bytes"
	"testing"
)

// The outer archive ends on a 10240-byte record whatever its length.
func TestWriteEndPadsToRecord(t *testing.T) {
	for written := int64(0); written < 10240; written += block {
		var b bytes.Buffer
		if err := writeEnd(&b, written, true); err != nil {
			t.Fatal(err)
		}
		if (written+int64(b.Len()))%10240 != 0 || b.Len() < 2*block {
			t.Fatalf("written %d: end of %d bytes", written, b.Len())
		}
	}
}

func TestPAXRecordLength(t *testing.T) {
	for _, v := range []string{"", "x", "123456", string(bytes.Repeat([]byte("a"), 95))} {
		r := paxRecord("k", v)
		m, err := parsePAX([]byte(r))
		if err != nil || m["k"] != v {
			t.Fatalf("%q: %v %v", r, m, err)
		}
	}
}
