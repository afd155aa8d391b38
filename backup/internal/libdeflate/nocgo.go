//go:build !cgo

package libdeflate

import "errors"

// Available says whether this build has libdeflate.
const Available = false

// Decompressor is a stand-in: New returns nil without cgo.
type Decompressor struct{}

// New returns nil: no libdeflate without cgo.
func New() *Decompressor { return nil }

// Gunzip is never reached (New returns nil).
func (*Decompressor) Gunzip(out, member []byte) error {
	return errors.New("no libdeflate in this build")
}

// Close does nothing.
func (*Decompressor) Close() {}
