package backup

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime/debug"

	"golang.org/x/crypto/scrypt"
)

// scryptKey is scrypt (RFC 7914) with the ROMix scratch memory (128·r·N
// bytes) mapped outside the Go heap (kdfscratch.go): no garbage for the
// GC and no FreeOSMemory per key. On amd64 BlockMix runs in SSE2
// (salsaBlockMix); elsewhere, or if the mapping fails, x/crypto/scrypt
// does the work.
func scryptKey(pass, salt []byte, logN uint8, r, p int, sc *scratch) ([]byte, error) {
	if !haveBlockMix || !simdParams(logN, r, p) {
		return xscrypt(pass, salt, logN, r, p)
	}
	n := 1 << logN
	bs := 128 * r
	mem, err := sc.get(bs*n + 2*bs)
	if err != nil {
		return xscrypt(pass, salt, logN, r, p)
	}
	defer sc.put(mem)
	b, err := pbkdf2.Key(sha256.New, string(pass), salt, 1, p*bs)
	if err != nil {
		return nil, err
	}
	v, x, y := mem[:bs*n], mem[bs*n:bs*n+bs], mem[bs*n+bs:]
	for i := 0; i < p; i++ {
		romix(b[i*bs:(i+1)*bs], v, x, y, n, r)
	}
	return pbkdf2.Key(sha256.New, string(pass), b, 1, 64)
}

// scryptKey2 derives two keys with the same parameters at once, in
// salsaBlockMix2 (AVX2): about the time of one. It falls back to two
// scryptKey calls where that kernel is missing or the mapping fails.
func scryptKey2(pass, salt [2][]byte, logN uint8, r, p int, sc *scratch) (dk [2][]byte, err error) {
	single := func() ([2][]byte, error) {
		for l := range 2 {
			if dk[l], err = scryptKey(pass[l], salt[l], logN, r, p, sc); err != nil {
				return dk, err
			}
		}
		return dk, nil
	}
	if !haveBlockMix2 || !simdParams(logN, r, p) {
		return single()
	}
	n := 1 << logN
	bs := 128 * r
	var b, v, x, y, mem [2][]byte
	for l := range 2 {
		if mem[l], err = sc.get(bs*n + 2*bs); err != nil {
			return single() // the deferred put returns an area got before
		}
		defer sc.put(mem[l])
		if b[l], err = pbkdf2.Key(sha256.New, string(pass[l]), salt[l], 1, p*bs); err != nil {
			return dk, err
		}
		m := mem[l]
		v[l], x[l], y[l] = m[:bs*n], m[bs*n:bs*n+bs], m[bs*n+bs:]
	}
	for i := 0; i < p; i++ {
		blk := [2][]byte{b[0][i*bs : (i+1)*bs], b[1][i*bs : (i+1)*bs]}
		romix2(&blk, &v, &x, &y, n, r)
	}
	for l := range 2 {
		if dk[l], err = pbkdf2.Key(sha256.New, string(pass[l]), b[l], 1, 64); err != nil {
			return dk, err
		}
	}
	return dk, nil
}

// simdParams: the parameters the SIMD paths take (sizes that fit an int
// and a mapping); anything else goes to x/crypto, which refuses or copes.
func simdParams(logN uint8, r, p int) bool {
	return logN < 32 && r > 0 && p > 0 && uint64(r)*uint64(p) < 1<<30 && uint64(r)<<logN <= 1<<33
}

func xscrypt(pass, salt []byte, logN uint8, r, p int) ([]byte, error) {
	dk, err := scrypt.Key(pass, salt, 1<<logN, r, p, 64)
	// That derivation leaves 128·r·N bytes of garbage: hand it back now
	// rather than let the heap hold several next to the chunk buffers.
	debug.FreeOSMemory()
	return dk, err
}

// salsaOrder is the word order inside each 64-byte block that the SIMD
// Salsa20/8 works in: its four diagonals, one per register. BlockMix
// and the XOR with V are word-wise, so the whole ROMix can run on
// blocks kept in this order; word 0 (Integerify) stays in place.
var salsaOrder = [16]int{0, 5, 10, 15, 12, 1, 6, 11, 8, 13, 2, 7, 4, 9, 14, 3}

// romix is scryptROMix on one 128·r-byte block, in place; v holds N
// blocks, x and y one each (all as bytes of little-endian words).
func romix(blk, v, x, y []byte, n, r int) {
	bs := 128 * r
	toSalsaOrder(x, blk, r)
	// V[0] = X, V[i+1] = BlockMix(V[i]), X = BlockMix(V[N-1]): written
	// in place, with no copy of each block into V.
	copy(v[:bs], x)
	for i := 0; i < n-1; i++ {
		salsaBlockMix(&v[(i+1)*bs], &v[i*bs], nil, r)
	}
	salsaBlockMix(&x[0], &v[(n-1)*bs], nil, r)
	for i := 0; i < n; i++ {
		j := integerify(x, n, r)
		salsaBlockMix(&y[0], &x[0], &v[j*bs], r)
		x, y = y, x
	}
	fromSalsaOrder(blk, x, r)
}

// romix2 is romix on two blocks at once, each with its own v, x and y
// (salsaBlockMix2); the two runs only differ in which V blocks they read.
func romix2(blk, v, x, y *[2][]byte, n, r int) {
	bs := 128 * r
	for l := range 2 {
		toSalsaOrder(x[l], blk[l], r)
		copy(v[l][:bs], x[l])
	}
	v0, v1 := v[0], v[1]
	for i := 0; i < n-1; i++ {
		salsaBlockMix2(&v0[(i+1)*bs], &v1[(i+1)*bs], &v0[i*bs], &v1[i*bs], nil, nil, r)
	}
	x0, x1, y0, y1 := x[0], x[1], y[0], y[1]
	salsaBlockMix2(&x0[0], &x1[0], &v0[(n-1)*bs], &v1[(n-1)*bs], nil, nil, r)
	for i := 0; i < n; i++ {
		j0, j1 := integerify(x0, n, r), integerify(x1, n, r)
		salsaBlockMix2(&y0[0], &y1[0], &x0[0], &x1[0], &v0[j0*bs], &v1[j1*bs], r)
		x0, y0, x1, y1 = y0, x0, y1, x1
	}
	fromSalsaOrder(blk[0], x0, r)
	fromSalsaOrder(blk[1], x1, r)
}

// integerify is the low 64 bits of x's last 64-byte block, mod n: words
// 0 and 1, where word 1 sits at position 5 of the diagonal order.
func integerify(x []byte, n, r int) int {
	last := (2*r - 1) * 64
	return int((uint64(binary.LittleEndian.Uint32(x[last:])) | uint64(binary.LittleEndian.Uint32(x[last+20:]))<<32) & uint64(n-1))
}

func toSalsaOrder(dst, src []byte, r int) {
	for k := 0; k < 2*r; k++ {
		for w := 0; w < 16; w++ {
			copy(dst[k*64+w*4:k*64+w*4+4], src[k*64+salsaOrder[w]*4:])
		}
	}
}

func fromSalsaOrder(dst, src []byte, r int) {
	for k := 0; k < 2*r; k++ {
		for w := 0; w < 16; w++ {
			copy(dst[k*64+salsaOrder[w]*4:k*64+salsaOrder[w]*4+4], src[k*64+w*4:])
		}
	}
}

// checkKDF compares scryptKey with x/crypto for tests.
func checkKDF(pass, salt []byte, logN uint8, r, p int) error {
	a, err := scryptKey(pass, salt, logN, r, p, nil)
	if err != nil {
		return err
	}
	b, err := xscrypt(pass, salt, logN, r, p)
	if err != nil {
		return err
	}
	if string(a) != string(b) {
		return fmt.Errorf("scrypt %d:%d:%d differs from x/crypto", logN, r, p)
	}
	return nil
}

// KDFHeapBytes is the Go heap one derivation with p needs: none where
// the work area is mapped outside the heap (scryptKey), 128·r·N where
// x/crypto does the work. Callers size debug.SetMemoryLimit with it.
func KDFHeapBytes(p Params) int64 {
	if haveBlockMix {
		return 0
	}
	return int64(p.Memory())
}
