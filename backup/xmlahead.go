package backup

import (
	"io"
)

// xmlAhead is the qubes.xml.000.enc member of a format 4 archive, read
// right after the header's .hmac, so that OpenArchive derives its key
// together with the header's (openHeaders2). It is used only once the
// header has authenticated; until then its errors wait.
type xmlAhead struct {
	id   string // backup-id the passphrase was made with
	err  error  // reading the member failed
	data []byte
	key  *keyResult // derived with the header's; nil: derive in open
}

func (a *Archive) readXMLAhead(id string) *xmlAhead {
	x := &xmlAhead{id: id}
	m, err := a.tr.Next()
	switch {
	case err != nil:
		x.err = a.eofErr(err, "qubes.xml.000.enc")
	case m.Name != "qubes.xml.000.enc":
		x.err = formatErr("unexpected member %q where qubes.xml.000.enc belongs", m.Name)
	case m.Size > maxMetadataSize:
		x.err = formatErr("qubes.xml.000.enc is %d bytes, more than the 1 MiB allowed", m.Size)
	}
	if x.err != nil {
		return x
	}
	x.data = make([]byte, m.Size)
	if _, err := io.ReadFull(a.tr, x.data); err != nil {
		x.err = a.eofErr(err, m.Name)
		return x
	}
	return x
}

func (x *xmlAhead) pass(a *Archive) []byte {
	return []byte(x.id + "!qubes.xml.000!" + a.o.Passphrase)
}

// open authenticates and decrypts the member, as Open does.
func (x *xmlAhead) open(a *Archive) ([]byte, error) {
	if x.err != nil {
		return nil, x.err
	}
	if x.key == nil {
		k, err := openHeader(x.pass(a), x.data, a.kdf)
		x.key = &keyResult{k, err}
	}
	if x.key.err != nil {
		return nil, x.key.err
	}
	return x.key.k.open(x.data)
}
