"""The instruction table: every mnemonic form softjit emits and the ISA features each needs.

One line a form:  mnemonic  operands  vex-feature  evex-feature  flags

Operand codes (comma-separated positions, '/' between alternatives):
  V   vector register at the instruction width W      H   vector register at W/2
  X/Y/Z  xmm/ymm/zmm register                          K   mask register
  M   memory at W          Mh  memory at W/2           B   memory at W or a {1toN} dword broadcast
  Bq  memory at W or a {1toN} qword broadcast          m8/m16/m32/m64/m128/m256  sized memory
  G   a VSIB address [base + vindex*scale + disp] whose index is a dword vector at W (gathers)
  R   64-bit gp register   E   32-bit gp register      W   16-bit gp register
  A   an address (lea: no size)
  I   immediate            L   label or function symbol
H is never narrower than an xmm register (vcvtps2pd xmm, xmm reads the low half of an xmm);
Mh at W = 128 is an m64.
Features: '-' where the encoding does not exist. Flags:
  mask     takes a {k} / {k}{z} write mask on its first operand (EVEX)
  rmw      the first operand is read as well as written (FMA, blends into the destination)
  nodest   the first operand is only read (stores, compares, branches)
  vl       the EVEX form below 512 bits needs AVX512VL (set for every packed vector form)
  min256   no xmm form: the vector operands are ymm or zmm (vpermps, vinsertf32x4, ...)
  needmask the form requires a merging {k} write mask (no {z}); the instruction clears the mask
  distinct the destination, the vector index and (AVX2 gathers) the mask vector must be three
           different registers: the CPU raises #UD otherwise
  flags    writes the status flags; usesflags  reads them
The table is data. Validation reads the features and the mask/vl/min256/needmask/distinct
flags; rmw, nodest, flags and usesflags document each form's reads and writes (liveness is by stream position and needs them
not, being conservative).
"""
from __future__ import annotations

from dataclasses import dataclass

_TABLE = """
# packed float32 / float64 arithmetic
vaddps       V,V,V/B        avx   avx512f   mask vl
vsubps       V,V,V/B        avx   avx512f   mask vl
vmulps       V,V,V/B        avx   avx512f   mask vl
vdivps       V,V,V/B        avx   avx512f   mask vl
vsqrtps      V,V/B          avx   avx512f   mask vl
vmaxps       V,V,V/B        avx   avx512f   mask vl
vminps       V,V,V/B        avx   avx512f   mask vl
vaddpd       V,V,V/Bq       avx   avx512f   mask vl
vsubpd       V,V,V/Bq       avx   avx512f   mask vl
vmulpd       V,V,V/Bq       avx   avx512f   mask vl
vmaxpd       V,V,V/Bq       avx   avx512f   mask vl
vfmadd132ps  V,V,V/B        fma   avx512f   mask vl rmw
vfmadd213ps  V,V,V/B        fma   avx512f   mask vl rmw
vfmadd231ps  V,V,V/B        fma   avx512f   mask vl rmw
vfnmadd132ps V,V,V/B        fma   avx512f   mask vl rmw
vfnmadd213ps V,V,V/B        fma   avx512f   mask vl rmw
vfnmadd231ps V,V,V/B        fma   avx512f   mask vl rmw
vfmsub132ps  V,V,V/B        fma   avx512f   mask vl rmw
vfmsub213ps  V,V,V/B        fma   avx512f   mask vl rmw
vfmsub231ps  V,V,V/B        fma   avx512f   mask vl rmw
vfnmsub132ps V,V,V/B        fma   avx512f   mask vl rmw
vfnmsub213ps V,V,V/B        fma   avx512f   mask vl rmw
vfnmsub231ps V,V,V/B        fma   avx512f   mask vl rmw
vfmadd213pd  V,V,V/Bq       fma   avx512f   mask vl rmw
vfmadd231pd  V,V,V/Bq       fma   avx512f   mask vl rmw
vscalefps    V,V,V/B        -     avx512f   mask vl
vscalefpd    V,V,V/Bq       -     avx512f   mask vl
vrndscaleps  V,V/B,I        -     avx512f   mask vl
vroundps     V,V/M,I        avx   -
# approximations: the result's relative error is within 1.5*2^-12 (vrcpps, vrsqrtps) or 2^-14
# (the AVX-512 forms); the exact bits are the CPU's own (the emulator: see handlers/approximate.py)
vrcpps       V,V/M          avx   -
vrsqrtps     V,V/M          avx   -
vrcp14ps     V,V/B          -     avx512f   mask vl
vrsqrt14ps   V,V/B          -     avx512f   mask vl
# bitwise on float registers (EVEX forms of these need DQ; the vpandd family needs only F)
vandps       V,V,V/B        avx   avx512dq  mask vl
vandnps      V,V,V/B        avx   avx512dq  mask vl
vorps        V,V,V/B        avx   avx512dq  mask vl
vxorps       V,V,V/B        avx   avx512dq  mask vl
vpandd       V,V,V/B        -     avx512f   mask vl
vpord        V,V,V/B        -     avx512f   mask vl
vpxord       V,V,V/B        -     avx512f   mask vl
vpternlogd   V,V,V/B,I      -     avx512f   mask vl rmw
vblendvps    V,V,V/M,V      avx   -
vblendmps    V,V,V/B        -     avx512f   mask vl
# integer lanes (exponent-field arithmetic)
vpaddd       V,V,V/B        avx2  avx512f   mask vl
vpsubd       V,V,V/B        avx2  avx512f   mask vl
vpaddq       V,V,V/Bq       avx2  avx512f   mask vl
vpand        V,V,V/M        avx2  -
vpor         V,V,V/M        avx2  -
vpcmpgtd     V,V,V/M        avx2  -
vpminud      V,V,V/B        avx2  avx512f   mask vl
vpslld       V,V/M,I        avx2  avx512f   mask vl
vpsrld       V,V/M,I        avx2  avx512f   mask vl
vpsllq       V,V/M,I        avx2  avx512f   mask vl
vpsraq       V,V/M,I        -     avx512f   mask vl
vcvtps2dq    V,V/B          avx   avx512f   mask vl
vcvtdq2ps    V,V/B          avx   avx512f   mask vl
vcvttps2dq   V,V/B          avx   avx512f   mask vl
vpbroadcastd V,X/m32        avx2  avx512f   mask vl
vpbroadcastd V,E            -     avx512f   mask vl
vpshufd      V,V/B,I        avx2  avx512f   mask vl
# compares: to a vector of all-ones lanes (AVX) or to a k mask (AVX-512)
vcmpps       V,V,V/M,I      avx   -
vcmpps       K,V,V/B,I      -     avx512f   mask vl
# moves, loads, stores
vmovups      V,V/M          avx   avx512f   mask vl
vmovups      M,V            avx   avx512f   mask vl nodest
vmovaps      V,V/M          avx   avx512f   mask vl
vmovaps      M,V            avx   avx512f   mask vl nodest
vmovntps     M,V            avx   avx512f   vl nodest
vmaskmovps   V,V,M          avx   -
vmaskmovps   M,V,V          avx   -         nodest
vgatherdps   V,G,V          avx2  -         rmw distinct
vgatherdps   V,G            -     avx512f   mask vl rmw needmask distinct
prefetcht0   m8             base  -         nodest
prefetchnta  m8             base  -         nodest
vbroadcastss V,m32/X        avx   avx512f   mask vl
vmovss       X,m32          avx   avx512f
vmovss       m32,X          avx   avx512f   nodest
vmovsd       X,m64          avx   avx512f
vmovsd       m64,X          avx   avx512f   nodest
vmovd        X,E            avx   avx512f
vmovd        E,X            avx   avx512f
# width changes and shuffles (horizontal reductions)
vcvtps2pd    V,H/Mh         avx   avx512f   mask vl
vcvtpd2ps    H,V/M          avx   avx512f   mask vl
vextractf128 X/m128,Y,I     avx   -
vextractf32x4 X/m128,V,I    -     avx512f   mask vl min256
vextractf64x4 Y/m256,Z,I    -     avx512f   mask
vextractf32x8 Y/m256,Z,I    -     avx512dq  mask
vinsertf128  Y,Y,X/m128,I   avx   -
vinsertf32x4 V,V,X/m128,I   -     avx512f   mask vl min256
vinsertf32x8 Z,Z,Y/m256,I   -     avx512dq  mask
vpermps      V,V,V/B        avx2  avx512f   mask vl min256
vpermt2ps    V,V,V/B        -     avx512f   mask vl rmw
vpermw       V,V,V/M        -     avx512bw  mask vl
# half precision (float16 lanes in the low half): F16C's VEX forms, AVX-512F's EVEX ones
vcvtph2ps    V,H/Mh         f16c  avx512f   mask vl
vcvtps2ph    H/Mh,V,I       f16c  avx512f   mask vl
# 16-bit elements (float16 / bfloat16 buffers): words widened to dwords, dwords narrowed
vpmovzxwd    V,H/Mh         avx2  avx512f   mask vl
vpmovdw      H/Mh,V         -     avx512f   mask vl
vpackusdw    V,V,V/M        avx2  -
vpermilps    V,V/M,I        avx   avx512f   mask vl
vpermilpd    V,V/M,I        avx   avx512f   mask vl
vshufps      V,V,V/M,I      avx   avx512f   mask vl
vmovhlps     X,X,X          avx   avx512f
vmovshdup    V,V/M          avx   avx512f   mask vl
vunpckhpd    V,V,V/M        avx   avx512f   mask vl
# scalar float32 / float64
vaddss       X,X,X/m32      avx   avx512f
vsubss       X,X,X/m32      avx   avx512f
vmulss       X,X,X/m32      avx   avx512f
vdivss       X,X,X/m32      avx   avx512f
vmaxss       X,X,X/m32      avx   avx512f
vminss       X,X,X/m32      avx   avx512f
vaddsd       X,X,X/m64      avx   avx512f
vmulsd       X,X,X/m64      avx   avx512f
vsubsd       X,X,X/m64      avx   avx512f
vdivsd       X,X,X/m64      avx   avx512f
vcvtss2sd    X,X,X/m32      avx   avx512f
vcvtsd2ss    X,X,X/m64      avx   avx512f
vucomiss     X,X/m32        avx   avx512f   nodest flags
vmovmskps    E,V            avx   -
vzeroupper   -              avx   -
# mask registers
kmovw        K,E/m16        -     avx512f
kmovw        E/m16,K        -     avx512f
kmovd        K,E/m32        -     avx512bw
kortestw     K,K            -     avx512f   nodest flags
# general purpose (baseline x86-64: no feature needed)
mov          R/E,R/E/M/I    base  -
mov          M,R/E/W/I      base  -         nodest
movzx        E,m16          base  -
lea          R,A            base  -
add          R/E,R/E/M/I    base  -         rmw flags
sub          R/E,R/E/M/I    base  -         rmw flags
and          R/E,R/E/M/I    base  -         rmw flags
or           R/E,R/E/M/I    base  -         rmw flags
xor          R/E,R/E/M/I    base  -         rmw flags
imul         R/E,R/E/M      base  -         rmw flags
shl          R/E,I          base  -         rmw flags
shr          R/E,I          base  -         rmw flags
neg          R/E            base  -         rmw flags
cmp          R/E,R/E/M/I    base  -         nodest flags
test         R/E,R/E/I      base  -         nodest flags
cmovb        R/E,R/E        base  -         rmw usesflags
cmova        R/E,R/E        base  -         rmw usesflags
cmovae       R/E,R/E        base  -         rmw usesflags
cmovbe       R/E,R/E        base  -         rmw usesflags
push         R              base  -         nodest
pop          R              base  -
call         L              base  -         nodest
jmp          L              base  -         nodest
jb           L              base  -         nodest usesflags
jae          L              base  -         nodest usesflags
ja           L              base  -         nodest usesflags
jbe          L              base  -         nodest usesflags
je           L              base  -         nodest usesflags
jne          L              base  -         nodest usesflags
jp           L              base  -         nodest usesflags
jnp          L              base  -         nodest usesflags
ret          -              base  -         nodest
sfence       -              base  -         nodest
"""

JUMPS = frozenset({"jmp", "jb", "jae", "ja", "jbe", "je", "jne", "jp", "jnp"})


@dataclass(frozen=True)
class Form:
    mnemonic: str
    operands: tuple  # per position, a tuple of alternative operand codes
    vex: str | None  # feature needed by the VEX / legacy encoding ("base": none); None: no such encoding
    evex: str | None  # feature needed by the EVEX encoding; None: no such encoding
    flags: frozenset


def _parse(table: str) -> dict:
    forms: dict[str, list[Form]] = {}
    for line in table.strip().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        mnemonic, operands, vex, evex, *flags = line.split()
        ops = () if operands == "-" else tuple(tuple(p.split("/")) for p in operands.split(","))
        forms.setdefault(mnemonic, []).append(
            Form(mnemonic, ops, None if vex == "-" else vex, None if evex == "-" else evex,
                 frozenset(flags))
        )
    return forms


FORMS = _parse(_TABLE)

# Forms only code on the host target (isa.X86_64: the CPython entry points) may use: they call
# out of the emitted code, into the process it is loaded into, so the emulator, which runs the
# kernels, has no use for them (and does not take them). Same codes as above, plus
#   P   a function of the process, called through the PLT
_HOST_TABLE = """
call         P/R            base  -         nodest
cmp          m64/m32/m16,I  base  -         nodest flags
"""

HOST_FORMS = _parse(_HOST_TABLE)
