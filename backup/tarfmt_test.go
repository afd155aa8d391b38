package backup

import (
	"bytes"
	"io"
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

// Crafted PAX sparse 1.0 members are refused before anything is written
// out of bounds.
func TestSparseMapRefused(t *testing.T) {
	build := func(realsize, mapText string, data int) []byte {
		var b bytes.Buffer
		padded := int64(len(mapText)) + padLen(int64(len(mapText)))
		writeHeader(&b, tarHeader{Name: "vm1/GNUSparseFile.1/private.img", Size: padded + int64(data), Mode: 0o644, Typeflag: '0',
			PAX: [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "vm1/private.img"}, {"GNU.sparse.realsize", realsize}}})
		writePadded(&b, []byte(mapText))
		writePadded(&b, bytes.Repeat([]byte{1}, data))
		writeEnd(&b, 0, false)
		return b.Bytes()
	}
	open := func(name string, size int64) (io.WriteCloser, error) {
		return nopWriteCloser{io.Discard}, nil
	}
	for name, tc := range map[string][]byte{
		"overlap":         build("4096", "2\n0\n1024\n512\n1024\n", 2048),
		"beyond the size": build("1024", "1\n512\n1024\n", 1024),
		"wrong data size": build("4096", "1\n0\n1024\n", 512),
		"huge count":      build("4096", "99999999\n", 0),
		"not a number":    build("4096", "1\n0x10\n5\n", 0),
		"wrong name":      bytes.Replace(build("4096", "1\n0\n512\n", 512), []byte("name=vm1/private.img"), []byte("name=vm1/../../etc"), 1),
	} {
		if err := untarInner(bytes.NewReader(tc), "", "vm1/private.img", open); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := untarInner(bytes.NewReader(build("4096", "1\n0\n512\n", 512)), "", "vm1/private.img", open); err != nil {
		t.Errorf("valid member refused: %v", err)
	}
}
