#include "textflag.h"

// Two scryptBlockMix runs side by side in AVX2: instance 0 in the low
// 128-bit lane of Y0-Y9, instance 1 in the high lane. Salsa20/8 is one
// long dependency chain, so a lone run leaves most of the vector units
// idle; the second run rides along in the same instructions for almost
// no extra time. Blocks are in salsaOrder, as in kdf_amd64.s, and
// VPSHUFD shuffles each lane on its own, so the rounds are unchanged.

// QR2: dst ^= (a + b) <<< k (k2 = 32 - k), in both lanes.
#define QR2(a, b, dst, k, k2) VPADDD b, a, Y8; VPSLLD $k, Y8, Y9; VPSRLD $k2, Y8, Y8; VPXOR Y9, dst, dst; VPXOR Y8, dst, dst

#define DOUBLEROUND2 \
	QR2(Y0, Y1, Y3, 7, 25); QR2(Y3, Y0, Y2, 9, 23); QR2(Y2, Y3, Y1, 13, 19); QR2(Y1, Y2, Y0, 18, 14); \
	VPSHUFD $0x39, Y1, Y1; VPSHUFD $0x4E, Y2, Y2; VPSHUFD $0x93, Y3, Y3; \
	QR2(Y0, Y3, Y1, 7, 25); QR2(Y1, Y0, Y2, 9, 23); QR2(Y2, Y1, Y3, 13, 19); QR2(Y3, Y2, Y0, 18, 14); \
	VPSHUFD $0x93, Y1, Y1; VPSHUFD $0x4E, Y2, Y2; VPSHUFD $0x39, Y3, Y3

// SALSA2: Y0-Y3 = Salsa20/8(Y0-Y3 ^ Y4-Y7), per lane.
#define SALSA2 \
	VPXOR Y4, Y0, Y0; VPXOR Y5, Y1, Y1; VPXOR Y6, Y2, Y2; VPXOR Y7, Y3, Y3; \
	VMOVDQA Y0, Y4; VMOVDQA Y1, Y5; VMOVDQA Y2, Y6; VMOVDQA Y3, Y7; \
	DOUBLEROUND2; DOUBLEROUND2; DOUBLEROUND2; DOUBLEROUND2; \
	VPADDD Y4, Y0, Y0; VPADDD Y5, Y1, Y1; VPADDD Y6, Y2, Y2; VPADDD Y7, Y3, Y3

// LANES(p, q, off, y, x): y = the 16 bytes at off(p) | those at off(q) << 128.
#define LANES(p, q, off, y, x) VMOVDQU off(p), x; VINSERTI128 $1, off(q), y, y

#define LOAD2(p, q) LANES(p, q, 0, Y4, X4); LANES(p, q, 16, Y5, X5); LANES(p, q, 32, Y6, X6); LANES(p, q, 48, Y7, X7)

#define XORV2(p, q) \
	LANES(p, q, 0, Y8, X8); VPXOR Y8, Y4, Y4; LANES(p, q, 16, Y8, X8); VPXOR Y8, Y5, Y5; \
	LANES(p, q, 32, Y8, X8); VPXOR Y8, Y6, Y6; LANES(p, q, 48, Y8, X8); VPXOR Y8, Y7, Y7

#define XORS2(p, q) \
	LANES(p, q, 0, Y8, X8); VPXOR Y8, Y0, Y0; LANES(p, q, 16, Y8, X8); VPXOR Y8, Y1, Y1; \
	LANES(p, q, 32, Y8, X8); VPXOR Y8, Y2, Y2; LANES(p, q, 48, Y8, X8); VPXOR Y8, Y3, Y3

#define STORE2(p, q) \
	VMOVDQU X0, 0(p); VEXTRACTI128 $1, Y0, 0(q); VMOVDQU X1, 16(p); VEXTRACTI128 $1, Y1, 16(q); \
	VMOVDQU X2, 32(p); VEXTRACTI128 $1, Y2, 32(q); VMOVDQU X3, 48(p); VEXTRACTI128 $1, Y3, 48(q)

// func salsaBlockMix2(out0, out1, in0, in1, v0, v1 *byte, r int)
// outI = BlockMix(inI XOR vI), or BlockMix(inI) when v0 is nil (then v1
// is ignored); every block is 128·r bytes.
TEXT ·salsaBlockMix2(SB), NOSPLIT, $0-56
	MOVQ out0+0(FP), DI
	MOVQ out1+8(FP), R11
	MOVQ in0+16(FP), SI
	MOVQ in1+24(FP), R12
	MOVQ v0+32(FP), DX
	MOVQ v1+40(FP), R13
	MOVQ r+48(FP), CX
	MOVQ CX, R8
	SHLQ $7, R8            // 128·r
	LEAQ -64(SI)(R8*1), AX // last 64-byte block of in0
	LEAQ -64(R12)(R8*1), BX
	LANES(AX, BX, 0, Y0, X0)
	LANES(AX, BX, 16, Y1, X1)
	LANES(AX, BX, 32, Y2, X2)
	LANES(AX, BX, 48, Y3, X3)
	MOVQ CX, R8
	SHLQ $6, R8            // 64·r: the odd blocks go to the second half
	LEAQ 0(DI)(R8*1), R9
	LEAQ 0(R11)(R8*1), R10
	TESTQ DX, DX
	JZ plain
	MOVQ CX, R8
	SHLQ $7, R8
	LEAQ -64(DX)(R8*1), AX
	LEAQ -64(R13)(R8*1), BX
	XORS2(AX, BX)

xorloop:
	LOAD2(SI, R12)
	XORV2(DX, R13)
	SALSA2
	STORE2(DI, R11)
	ADDQ $64, SI
	ADDQ $64, R12
	ADDQ $64, DX
	ADDQ $64, R13
	LOAD2(SI, R12)
	XORV2(DX, R13)
	SALSA2
	STORE2(R9, R10)
	ADDQ $64, SI
	ADDQ $64, R12
	ADDQ $64, DX
	ADDQ $64, R13
	ADDQ $64, DI
	ADDQ $64, R11
	ADDQ $64, R9
	ADDQ $64, R10
	DECQ CX
	JNZ xorloop
	VZEROUPPER
	RET

plain:
	LOAD2(SI, R12)
	SALSA2
	STORE2(DI, R11)
	ADDQ $64, SI
	ADDQ $64, R12
	LOAD2(SI, R12)
	SALSA2
	STORE2(R9, R10)
	ADDQ $64, SI
	ADDQ $64, R12
	ADDQ $64, DI
	ADDQ $64, R11
	ADDQ $64, R9
	ADDQ $64, R10
	DECQ CX
	JNZ plain
	VZEROUPPER
	RET
