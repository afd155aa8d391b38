package backup

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime/debug"

	"golang.org/x/crypto/scrypt"
	"golang.org/x/sys/unix"
)

// scryptKey is scrypt (RFC 7914) with the ROMix scratch memory (128·r·N
// bytes) mapped outside the Go heap, on huge pages where the kernel
// gives them, and unmapped at once when the key is done: no garbage for
// the GC, no FreeOSMemory per key, fewer TLB misses on its random reads.
// On amd64 BlockMix runs in SSE2 (salsaBlockMix); elsewhere, or if the
// mapping fails, x/crypto/scrypt does the work.
func scryptKey(pass, salt []byte, logN uint8, r, p int) ([]byte, error) {
	if !haveBlockMix || logN >= 32 || r <= 0 || p <= 0 || uint64(r)*uint64(p) >= 1<<30 || uint64(r)<<logN > 1<<33 {
		return xscrypt(pass, salt, logN, r, p)
	}
	n := 1 << logN
	words := 32 * r // one 128·r-byte block in uint32s
	vlen := words * n * 4
	mem, err := unix.Mmap(-1, 0, vlen+2*words*4, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return xscrypt(pass, salt, logN, r, p)
	}
	defer unix.Munmap(mem)
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	b, err := pbkdf2.Key(sha256.New, string(pass), salt, 1, p*128*r)
	if err != nil {
		return nil, err
	}
	v := mem[:vlen]
	x := mem[vlen : vlen+words*4]
	y := mem[vlen+words*4:]
	for i := 0; i < p; i++ {
		romix(b[i*128*r:(i+1)*128*r], v, x, y, n, r)
	}
	return pbkdf2.Key(sha256.New, string(pass), b, 1, 64)
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
	for k := 0; k < 2*r; k++ {
		for w := 0; w < 16; w++ {
			copy(x[k*64+w*4:k*64+w*4+4], blk[k*64+salsaOrder[w]*4:])
		}
	}
	last := (2*r - 1) * 64
	// V[0] = X, V[i+1] = BlockMix(V[i]), X = BlockMix(V[N-1]): written
	// in place, with no copy of each block into V.
	copy(v[:bs], x)
	for i := 0; i < n-1; i++ {
		salsaBlockMix(&v[(i+1)*bs], &v[i*bs], nil, r)
	}
	salsaBlockMix(&x[0], &v[(n-1)*bs], nil, r)
	for i := 0; i < n; i++ {
		// Integerify: the low 64 bits of the last block, words 0 and 1
		// (word 1 sits at position 5 of the diagonal order).
		j := (uint64(binary.LittleEndian.Uint32(x[last:])) | uint64(binary.LittleEndian.Uint32(x[last+20:]))<<32) & uint64(n-1)
		salsaBlockMix(&y[0], &x[0], &v[int(j)*bs], r)
		x, y = y, x
	}
	for k := 0; k < 2*r; k++ {
		for w := 0; w < 16; w++ {
			copy(blk[k*64+salsaOrder[w]*4:k*64+salsaOrder[w]*4+4], x[k*64+w*4:])
		}
	}
}

// checkKDF compares scryptKey with x/crypto for tests.
func checkKDF(pass, salt []byte, logN uint8, r, p int) error {
	a, err := scryptKey(pass, salt, logN, r, p)
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
