package backup

const haveBlockMix = true

// salsaBlockMix is scryptBlockMix with Salsa20/8 (RFC 7914) on blocks in
// salsaOrder: out = BlockMix(in XOR v), or BlockMix(in) when v is nil.
// in, v and out are 128·r bytes each.
//
//go:noescape
func salsaBlockMix(out, in, v *byte, r int)
