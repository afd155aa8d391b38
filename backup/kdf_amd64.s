#include "textflag.h"

// scryptBlockMix with Salsa20/8 (RFC 7914 §3, §4) in SSE2. Each 64-byte
// block is kept in the diagonal order (see salsaOrder in kdf.go): X0 holds
// words 0,5,10,15, X1 12,1,6,11, X2 8,13,2,7, X3 4,9,14,3, so a column
// round is four vector quarter-round steps, and a lane rotation of X1-X3
// turns the rows into columns for the row round.

// QR: dst ^= (a + b) <<< k (k2 = 32 - k).
#define QR(a, b, dst, k, k2) MOVO a, X8; PADDL b, X8; MOVO X8, X9; PSLLL $k, X8; PSRLL $k2, X9; PXOR X8, dst; PXOR X9, dst

#define DOUBLEROUND \
	QR(X0, X1, X3, 7, 25); QR(X3, X0, X2, 9, 23); QR(X2, X3, X1, 13, 19); QR(X1, X2, X0, 18, 14); \
	PSHUFL $0x39, X1, X1; PSHUFL $0x4E, X2, X2; PSHUFL $0x93, X3, X3; \
	QR(X0, X3, X1, 7, 25); QR(X1, X0, X2, 9, 23); QR(X2, X1, X3, 13, 19); QR(X3, X2, X0, 18, 14); \
	PSHUFL $0x93, X1, X1; PSHUFL $0x4E, X2, X2; PSHUFL $0x39, X3, X3

// SALSA: X0-X3 = Salsa20/8(X0-X3 ^ X4-X7).
#define SALSA \
	PXOR X4, X0; PXOR X5, X1; PXOR X6, X2; PXOR X7, X3; \
	MOVO X0, X4; MOVO X1, X5; MOVO X2, X6; MOVO X3, X7; \
	DOUBLEROUND; DOUBLEROUND; DOUBLEROUND; DOUBLEROUND; \
	PADDL X4, X0; PADDL X5, X1; PADDL X6, X2; PADDL X7, X3

#define LOAD(p) MOVOU 0(p), X4; MOVOU 16(p), X5; MOVOU 32(p), X6; MOVOU 48(p), X7

#define XORV(p) MOVOU 0(p), X8; PXOR X8, X4; MOVOU 16(p), X8; PXOR X8, X5; MOVOU 32(p), X8; PXOR X8, X6; MOVOU 48(p), X8; PXOR X8, X7

#define STORE(p) MOVOU X0, 0(p); MOVOU X1, 16(p); MOVOU X2, 32(p); MOVOU X3, 48(p)

// func salsaBlockMix(out, in, v *byte, r int)
TEXT ·salsaBlockMix(SB), NOSPLIT, $0-32
	MOVQ out+0(FP), DI
	MOVQ in+8(FP), SI
	MOVQ v+16(FP), DX
	MOVQ r+24(FP), CX
	MOVQ CX, R8
	SHLQ $7, R8
	LEAQ -64(SI)(R8*1), AX
	MOVOU 0(AX), X0
	MOVOU 16(AX), X1
	MOVOU 32(AX), X2
	MOVOU 48(AX), X3
	MOVQ DI, R9
	MOVQ CX, R10
	SHLQ $6, R10
	ADDQ DI, R10
	TESTQ DX, DX
	JZ plain
	LEAQ -64(DX)(R8*1), AX
	MOVOU 0(AX), X8
	PXOR X8, X0
	MOVOU 16(AX), X8
	PXOR X8, X1
	MOVOU 32(AX), X8
	PXOR X8, X2
	MOVOU 48(AX), X8
	PXOR X8, X3

xorloop:
	LOAD(SI)
	XORV(DX)
	SALSA
	STORE(R9)
	ADDQ $64, SI
	ADDQ $64, DX
	LOAD(SI)
	XORV(DX)
	SALSA
	STORE(R10)
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R9
	ADDQ $64, R10
	DECQ CX
	JNZ xorloop
	RET

plain:
	LOAD(SI)
	SALSA
	STORE(R9)
	ADDQ $64, SI
	LOAD(SI)
	SALSA
	STORE(R10)
	ADDQ $64, SI
	ADDQ $64, R9
	ADDQ $64, R10
	DECQ CX
	JNZ plain
	RET
