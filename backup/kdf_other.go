//go:build !amd64

package backup

const haveBlockMix = false

func salsaBlockMix(out, in, v *byte, r int) { panic("no SIMD BlockMix on this architecture") }
