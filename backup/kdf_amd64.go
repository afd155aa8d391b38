package backup

import "golang.org/x/sys/cpu"

const haveBlockMix = true

// haveBlockMix2: salsaBlockMix2 needs AVX2.
var haveBlockMix2 = cpu.X86.HasAVX2

// salsaBlockMix is scryptBlockMix with Salsa20/8 (RFC 7914) on blocks in
// salsaOrder: out = BlockMix(in XOR v), or BlockMix(in) when v is nil.
// in, v and out are 128·r bytes each.
//
//go:noescape
func salsaBlockMix(out, in, v *byte, r int)

// salsaBlockMix2 is two independent salsaBlockMix runs at once (AVX2);
// v0 and v1 are both nil or both set.
//
//go:noescape
func salsaBlockMix2(out0, out1, in0, in1, v0, v1 *byte, r int)
