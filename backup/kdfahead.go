package backup

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
)

// aheadHits counts keys the stream took from the look-ahead (for tests).
var aheadHits atomic.Int64

// keyAhead derives the keys of the next chunks before the stream reaches
// them, when the archive is a file (io.ReaderAt): it walks the outer tar
// headers ahead of the stream with ReadAt, reads each wanted chunk's
// 96-byte scrypt header (which holds the salt and parameters) and starts
// its KDF, at most `slots` at a time (each holds 128·r·N bytes while it
// runs). Nothing read this way is trusted: the stream's own header bytes
// and name must equal what the look-ahead saw for its key to be used, and
// the chunk is authenticated with that key as always (HMAC over the
// stream's bytes, before any use). A look-ahead that sees anything odd
// just stops; the stream path then derives the keys itself and reports
// whatever is wrong.
type keyAhead struct {
	ra    io.ReaderAt
	id    string // backup-id the passphrases are made with
	pass  func(name string) string
	want  atomic.Pointer[func(dir string) bool] // nil: every qube (OpenArchive's guess)
	lim   *kdfLimit
	slots chan struct{}
	stop  chan struct{}
	once  sync.Once

	mu      sync.Mutex
	cond    *sync.Cond
	pending map[int64]*aheadKey // by the member's data offset
	scanned int64               // every member with data before this was seen
	ended   bool                // the scan stopped
}

type aheadKey struct {
	name string
	hdr  [scryptHeaderLen]byte
	done chan struct{}
	key  *Key
	err  error
}

// aheadSlots bounds the keys derived ahead and not yet used, so also
// the derivations in flight (one pair, as openHeaders2 runs them).
const aheadSlots = 2

// maxAheadMembers bounds how many members one step of the scan may walk
// over without finding a chunk to derive (members of other qubes).
const maxAheadMembers = 4096

// startKeyAhead starts the look-ahead at off, where the stream's next
// member header is; nil when the source cannot be read at offsets.
// want may be nil (every qube) and set later with setWant.
func startKeyAhead(ctx context.Context, ra io.ReaderAt, off int64, id string, pass func(string) string, want func(string) bool, lim *kdfLimit) *keyAhead {
	var probe [block]byte
	if _, err := ra.ReadAt(probe[:1], 0); err != nil {
		return nil // a pipe: the stream path only
	}
	k := &keyAhead{ra: ra, id: id, pass: pass, lim: lim, slots: make(chan struct{}, aheadSlots),
		stop: make(chan struct{}), pending: map[int64]*aheadKey{}, scanned: off}
	k.cond = sync.NewCond(&k.mu)
	if want != nil {
		k.want.Store(&want)
	}
	go k.scan(ctx, off)
	return k
}

// atReader reads sequentially through ReadAt, and skips without reading.
type atReader struct {
	ra  io.ReaderAt
	off int64
}

func (r *atReader) Read(p []byte) (int, error) {
	n, err := r.ra.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (k *keyAhead) scan(ctx context.Context, off int64) {
	defer func() {
		k.mu.Lock()
		k.ended = true
		k.cond.Broadcast()
		k.mu.Unlock()
	}()
	src := &atReader{ra: k.ra, off: off}
	tr := &tarReader{r: src, Offset: off}
	for {
		// Keys go in pairs (openHeaders2: two for about the price of
		// one), so the scan waits for both slots.
		for range 2 {
			select {
			case k.slots <- struct{}{}:
			case <-k.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		var batch []*aheadKey
		var bufs [2][]byte
		ok := true
		for len(batch) < 2 && ok {
			var e *aheadKey
			if e, bufs[len(batch)], ok = k.next(tr, src); ok {
				batch = append(batch, e)
			}
		}
		for range 2 - len(batch) {
			<-k.slots
		}
		switch len(batch) {
		case 1:
			go func() {
				e := batch[0]
				e.key, e.err = openHeader([]byte(k.pass(e.name)), bufs[0], k.lim)
				close(e.done)
			}()
		case 2:
			go func() {
				r := openHeaders2([2][]byte{[]byte(k.pass(batch[0].name)), []byte(k.pass(batch[1].name))}, bufs, k.lim)
				for l, e := range batch {
					e.key, e.err = r[l].k, r[l].err
					close(e.done)
				}
			}()
		}
		if !ok {
			return
		}
	}
}

// next walks to the next chunk the restore wants, reads its scrypt
// header and lists it as pending (its derivation not started yet); ok is
// false when the scan must stop.
func (k *keyAhead) next(tr *tarReader, src *atReader) (e *aheadKey, buf []byte, ok bool) {
	for skipped := 0; ; {
		h, err := tr.Next()
		if err != nil {
			return nil, nil, false
		}
		data := tr.Offset
		// Over the data without reading it.
		n := tr.remain + tr.pad
		tr.remain, tr.pad = 0, 0
		src.off += n
		tr.Offset += n
		m, err := parseMember(h.Name, false)
		if err != nil || h.Size < ScryptOverhead || h.Size > MaxChunkSize+ScryptOverhead {
			return nil, nil, false
		}
		if m.file == "qubes.xml" || !k.wants(m.dir) {
			if skipped++; skipped > maxAheadMembers {
				return nil, nil, false
			}
			k.advance(tr.Offset)
			continue
		}
		e = &aheadKey{name: h.Name, done: make(chan struct{})}
		buf = make([]byte, ScryptOverhead)
		if _, err := k.ra.ReadAt(buf[:scryptHeaderLen], data); err != nil {
			return nil, nil, false
		}
		copy(e.hdr[:], buf)
		k.mu.Lock()
		k.pending[data] = e
		k.scanned = tr.Offset
		k.cond.Broadcast()
		k.mu.Unlock()
		return e, buf, true
	}
}

// setWant narrows the scan to the qubes being restored, from the next
// member it walks over on.
func (k *keyAhead) setWant(want func(dir string) bool) { k.want.Store(&want) }

func (k *keyAhead) wants(dir string) bool {
	w := k.want.Load()
	return w == nil || (*w)(dir)
}

func (k *keyAhead) advance(off int64) {
	k.mu.Lock()
	k.scanned = off
	k.cond.Broadcast()
	k.mu.Unlock()
}

// release frees e's slot once its derivation is over.
func (k *keyAhead) release(e *aheadKey) {
	go func() {
		<-e.done
		<-k.slots
	}()
}

// take returns the wait for the key derived ahead for the member whose
// data starts at off, when the look-ahead saw the same name and scrypt
// header there; ok is false when the caller must derive the key itself.
// Keys for members before off are dropped.
func (k *keyAhead) take(off int64, name string, hdr []byte) (wait func() (*Key, error), ok bool) {
	if k == nil {
		return nil, false
	}
	k.mu.Lock()
	for o, e := range k.pending {
		if o < off {
			delete(k.pending, o)
			k.release(e)
		}
	}
	for k.pending[off] == nil && k.scanned <= off && !k.ended {
		k.cond.Wait()
	}
	e := k.pending[off]
	delete(k.pending, off)
	k.mu.Unlock()
	if e == nil {
		return nil, false
	}
	if e.name != name || !bytes.Equal(e.hdr[:], hdr[:scryptHeaderLen]) {
		k.release(e)
		return nil, false
	}
	aheadHits.Add(1)
	return func() (*Key, error) {
		<-e.done
		<-k.slots
		return e.key, e.err
	}, true
}

// close stops the scan; derivations in flight finish on their own.
func (k *keyAhead) close() {
	k.once.Do(func() { close(k.stop) })
	k.mu.Lock()
	for o, e := range k.pending {
		delete(k.pending, o)
		k.release(e)
	}
	k.mu.Unlock()
}

// chunkPass is the passphrase of a data member (name with .enc).
func (a *Archive) chunkPass(name string) string {
	return chunkPass(a.Header.BackupID, name, a.o.Passphrase)
}

func chunkPass(id, name, pass string) string {
	return id + "!" + strings.TrimSuffix(name, ".enc") + "!" + pass
}
