package backup

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
)

// The scrypt container of the Tarsnap scrypt tool: a 96-byte header, the
// AES-256-CTR ciphertext and an HMAC-SHA256 over header and ciphertext.
const (
	scryptHeaderLen = 96
	scryptMACLen    = 32
	// ScryptOverhead is what a container adds to its plaintext.
	ScryptOverhead = scryptHeaderLen + scryptMACLen
)

// Params are the scrypt KDF cost parameters (N = 2^LogN).
type Params struct {
	LogN uint8
	R, P uint32
}

// DefaultParams cost 128 MiB and about 0.3 s per key on one core: a
// guess at the passphrase costs an attacker the same, which is 2^17·8·128
// bytes of memory traffic, far above GPU-friendly settings, while a
// 100-chunk backup spends about half a minute on keys (spread over cores).
var DefaultParams = Params{LogN: 17, R: 8, P: 1}

func (p Params) String() string { return fmt.Sprintf("%d:%d:%d", p.LogN, p.R, p.P) }

// Memory is the KDF's working memory in bytes (128·r·N).
func (p Params) Memory() uint64 { return 128 * uint64(p.R) << p.LogN }

// ParseParams reads "LOGN:R:P".
func ParseParams(s string) (Params, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return Params{}, fmt.Errorf("scrypt parameters %q: want LOGN:R:P, e.g. 17:8:1", s)
	}
	n, err1 := strconv.ParseUint(f[0], 10, 8)
	r, err2 := strconv.ParseUint(f[1], 10, 32)
	p, err3 := strconv.ParseUint(f[2], 10, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Params{}, fmt.Errorf("scrypt parameters %q: want three decimal numbers LOGN:R:P", s)
	}
	out := Params{LogN: uint8(n), R: uint32(r), P: uint32(p)}
	return out, out.check(1 << 40)
}

// check applies the scrypt tool's limits plus a memory ceiling, so a
// crafted container cannot make the reader allocate without bound.
func (p Params) check(maxMem uint64) error {
	switch {
	case p.LogN < 1 || p.LogN > 63:
		return fmt.Errorf("scrypt logN %d out of range 1..63", p.LogN)
	case p.R == 0 || p.P == 0:
		return fmt.Errorf("scrypt r and p must not be 0")
	case uint64(p.R)*uint64(p.P) >= 1<<30:
		return fmt.Errorf("scrypt r·p must be below 2^30")
	case p.LogN > 40 || p.Memory() > maxMem:
		return fmt.Errorf("scrypt parameters %s need %d MiB, more than the allowed %d MiB", p, p.Memory()>>20, maxMem>>20)
	}
	return nil
}

// Key is a derived key with the salt and parameters that made it.
type Key struct {
	Params Params
	Salt   [32]byte
	dk     []byte // 64 bytes: AES key, HMAC key
}

// NewKey derives a key for passphrase with a fresh random salt.
func NewKey(passphrase []byte, p Params) (*Key, error) { return newKey(passphrase, p, nil) }

func newKey(passphrase []byte, p Params, sc *scratch) (*Key, error) {
	k := &Key{Params: p}
	if _, err := rand.Read(k.Salt[:]); err != nil {
		return nil, err
	}
	return k, k.derive(passphrase, sc)
}

// kdfRunning and kdfPeak count derivations at once (for tests).
var kdfRunning, kdfPeak atomic.Int32

// countKDF notes n derivations starting; the result notes their end.
func countKDF(n int32) (done func()) {
	now := kdfRunning.Add(n)
	for p := kdfPeak.Load(); now > p && !kdfPeak.CompareAndSwap(p, now); p = kdfPeak.Load() {
	}
	return func() { kdfRunning.Add(-n) }
}

// keyResult is a derived key or why there is none.
type keyResult struct {
	k   *Key
	err error
}

func (k *Key) derive(passphrase []byte, sc *scratch) error {
	defer countKDF(1)()
	dk, err := scryptKey(passphrase, k.Salt[:], k.Params.LogN, int(k.Params.R), int(k.Params.P), sc)
	if err != nil {
		return fmt.Errorf("scrypt: %w", err)
	}
	k.dk = dk
	return nil
}

// header builds the 96-byte container header.
func (k *Key) header() []byte {
	h := make([]byte, scryptHeaderLen)
	copy(h, "scrypt")
	h[6] = 0
	h[7] = k.Params.LogN
	binary.BigEndian.PutUint32(h[8:], k.Params.R)
	binary.BigEndian.PutUint32(h[12:], k.Params.P)
	copy(h[16:48], k.Salt[:])
	sum := sha256.Sum256(h[:48])
	copy(h[48:64], sum[:16])
	m := hmac.New(sha256.New, k.dk[32:])
	m.Write(h[:64])
	copy(h[64:96], m.Sum(nil))
	return h
}

// Seal encrypts plaintext in place and writes the whole container to w.
// plaintext is overwritten with ciphertext.
func (k *Key) Seal(w io.Writer, plaintext []byte) error {
	h := k.header()
	block, err := aes.NewCipher(k.dk[:32])
	if err != nil {
		return err
	}
	cipher.NewCTR(block, make([]byte, aes.BlockSize)).XORKeyStream(plaintext, plaintext)
	m := hmac.New(sha256.New, k.dk[32:])
	m.Write(h)
	m.Write(plaintext)
	if _, err := w.Write(h); err != nil {
		return err
	}
	if _, err := w.Write(plaintext); err != nil {
		return err
	}
	_, err = w.Write(m.Sum(nil))
	return err
}

// SealedSize is the container size for n plaintext bytes.
func SealedSize(n int64) int64 { return n + ScryptOverhead }

// Errors of Open; callers name the member.
var (
	ErrNotScrypt    = errors.New("not a scrypt-encrypted block")
	ErrBadPassword  = errors.New("passphrase is incorrect (or the member was renamed or moved)")
	ErrCorruptBlock = errors.New("authentication failed: the data was modified or truncated")
)

// Open authenticates a whole container and decrypts it in place; the
// returned slice aliases data. Nothing is decrypted before the trailing
// HMAC has been checked. maxMem bounds the KDF memory a header may ask for.
func Open(passphrase, data []byte, maxMem uint64) ([]byte, error) {
	lim := newKDFLimit(maxMem)
	defer lim.close()
	k, err := openHeader(passphrase, data, lim)
	if err != nil {
		return nil, err
	}
	return k.open(data)
}

// openHeader checks the header like scrypt dec does and derives the key.
func openHeader(passphrase, data []byte, lim *kdfLimit) (*Key, error) {
	k, err := parseContainer(data, lim.max)
	if err != nil {
		return nil, err
	}
	lim.acquire(k.Params.Memory())
	err = k.derive(passphrase, lim.sc)
	lim.release(k.Params.Memory())
	if err != nil {
		return nil, err
	}
	if err := k.checkHeader(data); err != nil {
		return nil, err
	}
	return k, nil
}

// openHeaders2 is openHeader for two containers at once: when both
// headers are sound and ask for the same parameters, and lim has room
// for both, their keys are derived side by side (scryptKey2), in about
// the time of one.
func openHeaders2(pass, data [2][]byte, lim *kdfLimit) (out [2]keyResult) {
	var ks [2]*Key
	for l := range 2 {
		ks[l], out[l].err = parseContainer(data[l], lim.max)
	}
	if out[0].err != nil || out[1].err != nil || ks[0].Params != ks[1].Params || !lim.fits(2*ks[0].Params.Memory()) {
		for l := range 2 {
			if out[l].err == nil {
				out[l].k, out[l].err = openHeader(pass[l], data[l], lim)
			}
		}
		return out
	}
	p := ks[0].Params
	lim.acquire(2 * p.Memory())
	done := countKDF(2)
	dk, err := scryptKey2(pass, [2][]byte{ks[0].Salt[:], ks[1].Salt[:]}, p.LogN, int(p.R), int(p.P), lim.sc)
	done()
	lim.release(2 * p.Memory())
	for l := range 2 {
		if err != nil {
			out[l].err = fmt.Errorf("scrypt: %w", err)
			continue
		}
		ks[l].dk = dk[l]
		if out[l].err = ks[l].checkHeader(data[l]); out[l].err == nil {
			out[l].k = ks[l]
		}
	}
	return out
}

// parseContainer checks a container's header (magic, version, checksum,
// parameters within maxMem) and returns its key, not yet derived.
func parseContainer(data []byte, maxMem uint64) (*Key, error) {
	if len(data) < ScryptOverhead || string(data[:6]) != "scrypt" {
		return nil, ErrNotScrypt
	}
	if data[6] != 0 {
		return nil, fmt.Errorf("%w: unknown container version %d", ErrNotScrypt, data[6])
	}
	sum := sha256.Sum256(data[:48])
	if !hmac.Equal(sum[:16], data[48:64]) {
		return nil, fmt.Errorf("%w: header checksum mismatch", ErrNotScrypt)
	}
	k := &Key{Params: Params{LogN: data[7], R: binary.BigEndian.Uint32(data[8:]), P: binary.BigEndian.Uint32(data[12:])}}
	if err := k.Params.check(maxMem); err != nil {
		return nil, err
	}
	copy(k.Salt[:], data[16:48])
	return k, nil
}

// checkHeader verifies the header's HMAC with the derived key: a wrong
// passphrase fails here.
func (k *Key) checkHeader(data []byte) error {
	m := hmac.New(sha256.New, k.dk[32:])
	m.Write(data[:64])
	if !hmac.Equal(m.Sum(nil), data[64:96]) {
		return ErrBadPassword
	}
	return nil
}

// ContainerParams reads the KDF parameters of a container (for -v output).
func ContainerParams(data []byte) (Params, bool) {
	if len(data) < scryptHeaderLen || string(data[:6]) != "scrypt" {
		return Params{}, false
	}
	return Params{LogN: data[7], R: binary.BigEndian.Uint32(data[8:]), P: binary.BigEndian.Uint32(data[12:])}, true
}

// open checks the trailing HMAC of a container whose header k came from,
// then decrypts in place.
func (k *Key) open(data []byte) ([]byte, error) {
	body := data[scryptHeaderLen : len(data)-scryptMACLen]
	m := hmac.New(sha256.New, k.dk[32:])
	m.Write(data[:len(data)-scryptMACLen])
	if !hmac.Equal(m.Sum(nil), data[len(data)-scryptMACLen:]) {
		return nil, ErrCorruptBlock
	}
	block, err := aes.NewCipher(k.dk[:32])
	if err != nil {
		return nil, err
	}
	cipher.NewCTR(block, make([]byte, aes.BlockSize)).XORKeyStream(body, body)
	return body, nil
}
