package backup

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/scrypt"
)

// RFC 7914 §12 test vectors, then random parameters against x/crypto.
func TestScryptKey(t *testing.T) {
	for _, tc := range []struct {
		pass, salt string
		logN       uint8
		r, p       int
		want       string
	}{
		{"password", "NaCl", 10, 8, 16, "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"},
		{"pleaseletmein", "SodiumChloride", 14, 8, 1, "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"},
	} {
		got, err := scryptKey([]byte(tc.pass), []byte(tc.salt), tc.logN, tc.r, tc.p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != tc.want {
			t.Errorf("scrypt(%q, %q, %d, %d, %d) = %x", tc.pass, tc.salt, tc.logN, tc.r, tc.p, got)
		}
	}
	for _, c := range [][3]int{{1, 1, 1}, {4, 1, 1}, {8, 2, 3}, {10, 8, 1}, {12, 3, 2}, {9, 16, 1}, {6, 5, 4}} {
		if err := checkKDF([]byte("pass word"), []byte("some salt of 32 bytes, more or l"), uint8(c[0]), c[1], c[2]); err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkScrypt17(b *testing.B) {
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		scryptKey([]byte("pw"), []byte("salt"), 17, 8, 1, nil)
		t1 := time.Now()
		scrypt.Key([]byte("pw"), []byte("salt"), 1<<17, 8, 1, 64)
		b.Logf("ours %v, x/crypto %v", t1.Sub(t0), time.Since(t1))
	}
}

func TestScryptKey2(t *testing.T) {
	if !haveBlockMix2 {
		t.Skip("no AVX2 on this CPU: salsaBlockMix2 is not used")
	}
	// Each size twice through one scratch cache: reused work areas hold
	// the last key's state, which must not matter.
	sc := &scratch{}
	defer sc.close()
	for _, c := range [][3]int{{1, 1, 1}, {4, 1, 1}, {8, 2, 3}, {8, 2, 3}, {10, 8, 1}, {12, 3, 2}, {12, 3, 2}, {9, 16, 1}, {6, 5, 4}} {
		pass := [2][]byte{[]byte("pass word"), []byte("another one")}
		salt := [2][]byte{[]byte("some salt of 32 bytes, more or l"), []byte("salt " + fmt.Sprint(c))}
		dk, err := scryptKey2(pass, salt, uint8(c[0]), c[1], c[2], sc)
		if err != nil {
			t.Fatal(err)
		}
		for l := range 2 {
			want, err := scrypt.Key(pass[l], salt[l], 1<<c[0], c[1], c[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			if string(dk[l]) != string(want) {
				t.Errorf("scryptKey2 %v, run %d differs from x/crypto", c, l)
			}
		}
	}
}

func BenchmarkScrypt17Pair(b *testing.B) {
	pass := [2][]byte{[]byte("pw"), []byte("pw2")}
	salt := [2][]byte{[]byte("salt"), []byte("salt2")}
	sc := &scratch{}
	defer sc.close()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		scryptKey2(pass, salt, 17, 8, 1, nil)
		t1 := time.Now()
		scryptKey2(pass, salt, 17, 8, 1, sc)
		t2 := time.Now()
		scryptKey(pass[0], salt[0], 17, 8, 1, nil)
		b.Logf("pair %v (work areas reused: %v), one %v", t1.Sub(t0), t2.Sub(t1), time.Since(t2))
	}
}
