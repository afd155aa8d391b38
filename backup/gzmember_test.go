package backup

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// gzTestData mixes random and compressible bytes.
func gzTestData(n int) []byte {
	b := make([]byte, n)
	for off := 0; off < n; off += 300 << 10 {
		end := min(off+150<<10, n)
		rand.Read(b[off:end])
		for i := end; i < min(off+300<<10, n); i++ {
			b[i] = "qube volume backup "[i%19]
		}
	}
	return b
}

func memberCompress(t *testing.T, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	z, err := newCompressor("gzip", &out)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes, so that blocks straddle writes.
	for p := data; len(p) > 0; {
		n := min(len(p), 77777)
		if _, err := z.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func decompressAll(data []byte) ([]byte, error) {
	dr, err := newDecompressor("gzip", bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	defer dr.Close()
	return io.ReadAll(dr)
}

var gzSizes = []int{0, 1, 5000, gzBlock - 1, gzBlock, gzBlock + 1, 3*gzBlock + gzBlock/2}

// The writer's stream is independent members, each with the length
// subfield; gzip -d, Python's gzip and our reader (libdeflate and the Go
// inflater) give back the input.
func TestMemberStream(t *testing.T) {
	needTool(t, "gzip")
	for _, n := range gzSizes {
		data := gzTestData(n)
		z := memberCompress(t, data)
		members := 0
		for p := z; len(p) > 0; members++ {
			l := memberLen(p)
			if l == 0 || l > len(p) {
				t.Fatalf("%d bytes: member %d has no length subfield", n, members)
			}
			p = p[l:]
		}
		if want := max(1, (n+gzBlock-1)/gzBlock); members != want {
			t.Errorf("%d bytes: %d members, want %d", n, members, want)
		}
		got, err := decompressAll(z)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: our reader: %v, equal %v", n, err, bytes.Equal(got, data))
		}
		cmd := exec.Command("gzip", "-d")
		cmd.Stdin = bytes.NewReader(z)
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("%d bytes: gzip -d: %v, equal %v", n, err, bytes.Equal(out, data))
		}
		if _, err := exec.LookPath("python3"); err == nil {
			cmd := exec.Command("python3", "-c", "import gzip,sys; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))")
			cmd.Stdin = bytes.NewReader(z)
			out, err := cmd.Output()
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("%d bytes: python3 gzip: %v, equal %v", n, err, bytes.Equal(out, data))
			}
		}
		// Member by member, the pure Go inflater (one, reused) agrees
		// with libdeflate.
		goInf := &goInflater{}
		for p := z; len(p) > 0; {
			l := memberLen(p)
			out := make([]byte, int(uint32(p[l-4])|uint32(p[l-3])<<8|uint32(p[l-2])<<16|uint32(p[l-1])<<24))
			if err := goInf.Gunzip(out, p[:l]); err != nil {
				t.Fatal(err)
			}
			d := newInflater()
			out2 := make([]byte, len(out))
			if err := d.Gunzip(out2, p[:l]); err != nil || !bytes.Equal(out, out2) {
				t.Fatalf("inflaters disagree: %v", err)
			}
			d.Close()
			p = p[l:]
		}
	}
}

// tar -xz extracts an inner tar written through the member writer.
func TestMemberStreamTarXz(t *testing.T) {
	needTool(t, "tar", "gzip")
	data := gzTestData(2*gzBlock + 12345)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "vm3/private.img", Size: int64(len(data)), Mode: 0o600, Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	dir := t.TempDir()
	cmd := exec.Command("tar", "-xzf", "-")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(memberCompress(t, tb.Bytes()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -xz: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "vm3/private.img"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("tar -xz gave other data: %v", err)
	}
}

// Streams from other writers (one member, members without our subfield,
// ours followed by a foreign one) are read by the streaming path.
func TestForeignGzipStreams(t *testing.T) {
	needTool(t, "gzip")
	data := gzTestData(2*gzBlock + 999)
	cmd := exec.Command("gzip", "-c")
	cmd.Stdin = bytes.NewReader(data)
	single, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var kz bytes.Buffer
	w := gzip.NewWriter(&kz)
	w.Write(data[:gzBlock])
	w.Close()
	w = gzip.NewWriter(&kz)
	w.Write(data[gzBlock:])
	w.Close()
	ours := memberCompress(t, data[:gzBlock+5])
	mixed := append(append([]byte(nil), ours...), single...)
	for _, tc := range []struct {
		name string
		z    []byte
		want []byte
	}{
		{"gzip -c", single, data},
		{"two foreign members", kz.Bytes(), data},
		{"ours then foreign", mixed, append(append([]byte(nil), data[:gzBlock+5]...), data...)},
	} {
		got, err := decompressAll(tc.z)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %v, equal %v", tc.name, err, bytes.Equal(got, tc.want))
		}
	}
}

// A damaged or cut member stream is an error, never silently short data.
func TestMemberStreamDamage(t *testing.T) {
	data := gzTestData(3 * gzBlock)
	z := memberCompress(t, data)
	first := memberLen(z)
	for _, tc := range []struct {
		name string
		z    func() []byte
	}{
		{"flipped byte in the second member", func() []byte {
			b := append([]byte(nil), z...)
			b[first+gzHeaderLen+100] ^= 0x40
			return b
		}},
		{"flipped CRC", func() []byte {
			b := append([]byte(nil), z...)
			b[first-8] ^= 1
			return b
		}},
		{"cut inside a member", func() []byte { return z[:first+5000] }},
		{"cut inside a header", func() []byte { return z[:first+7] }},
		{"length field too long", func() []byte {
			b := append([]byte(nil), z...)
			b[16]++
			return b
		}},
		{"trailing garbage", func() []byte { return append(append([]byte(nil), z...), "garbage!"...) }},
	} {
		got, err := decompressAll(tc.z())
		if err == nil {
			t.Errorf("%s: no error (%d bytes of %d)", tc.name, len(got), len(data))
		} else if !strings.Contains(err.Error(), "gzip") && !strings.Contains(err.Error(), "EOF") {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

// A member longer than gzMaxMember is left to the streaming decoder; one
// that claims to inflate past gzMaxOut is refused, not allocated.
func TestMemberLimits(t *testing.T) {
	var long bytes.Buffer
	w, _ := gzip.NewWriterLevel(&long, gzip.NoCompression)
	data := gzTestData(3 << 20)
	w.Write(data)
	w.Close()
	b := long.Bytes()
	// Give it our subfield with its true length, too long to take whole.
	m := make([]byte, gzHeaderLen, gzHeaderLen+len(b))
	putMemberHeader(m, gzHeaderLen+len(b)-10)
	m = append(m, b[10:]...)
	if memberLen(m) != 0 {
		t.Fatal("a 3 MiB member was taken whole")
	}
	if got, err := decompressAll(m); err != nil || !bytes.Equal(got, data) {
		t.Errorf("long member: %v", err)
	}
	z := memberCompress(t, gzTestData(1000))
	n := len(z)
	z[n-1] = 0x10 // ISIZE: 256 MiB
	if _, err := decompressAll(z); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("member claiming 256 MiB: %v", err)
	}
}
