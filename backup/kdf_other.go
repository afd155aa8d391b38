//go:build !amd64

package backup

const haveBlockMix = false

var haveBlockMix2 = false

func salsaBlockMix(out, in, v *byte, r int) { panic("no SIMD BlockMix on this architecture") }

func salsaBlockMix2(out0, out1, in0, in1, v0, v1 *byte, r int) {
	panic("no SIMD BlockMix on this architecture")
}
