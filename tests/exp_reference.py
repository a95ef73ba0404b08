"""The float32 exp reference and the accuracy bookkeeping shared by the exp tests.

Reference: numpy's float64 exp rounded to float32. The float64 result is within 1 ULP (of
float64) of the true exp(x); rounding it to float32 gives the correctly rounded float32 result
except when the true value lies within about 2^-29 relative of a float32 rounding boundary,
where the double rounding can land one float32 ULP off. That is astronomically rare (no such
input is known to matter here) and it could only ever cost one ULP on either side.

Bounds checked (ULPs are distances between float32 bit patterns, which for the non-negative
results of exp is the number of representable floats between them):
- correctly rounded result normal:    |ulp difference| <= NORMAL_ULP
- correctly rounded result subnormal: |difference| <= SUBNORMAL_ULP units of 2^-149
- correctly rounded result +0 / +inf: bit-for-bit equal (so never -0)
- NaN input: NaN output; no output other than NaN has its sign bit set
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NORMAL_ULP = 2
# Measured over every float32 input whose exp is subnormal (AVX2 natively, AVX-512 in the
# emulator; see test_exp_accuracy.py): the kernels scale the polynomial by 2^n in one rounding
# step, so a subnormal result is at most one unit of the subnormal spacing (2^-149) away from
# the correctly rounded one (off by one for 3% of those inputs), and less than 1.5 units from
# the exact value (worst seen 1.413: not always faithful, since the polynomial's own error is
# up to ~1.5 ULP of a normal number before the scaling).
SUBNORMAL_ULP = 1
SUBNORMAL_EXACT_UNITS = 1.5

FLT_MIN = np.float32(2.0 ** -126)
FLT_MAX = np.finfo(np.float32).max
FLT_TRUE_MIN = np.float32(2.0 ** -149)

OVERFLOW_CUTOFF = np.float32(float.fromhex("0x1.62E42Ep6"))  # 88.7228: above, exp(x) = +inf
DENORMAL_CUTOFF = np.float32(-float.fromhex("0x1.5D589Ep6"))  # -87.33654: below, subnormal
ZERO_CUTOFF = np.float32(-float.fromhex("0x1.9FE368p6"))  # -103.972: below, exp(x) rounds to 0


def f32_bits(value) -> int:
    return int(np.float32(value).view(np.uint32))


def describe(value) -> str:
    """A float32 as 'decimal (hex float, 0xBITS)'."""
    v = np.float32(value)
    bits = f32_bits(v)
    if np.isfinite(v):
        mantissa, exponent = float(v).hex().split("p")
        text = f"{mantissa.rstrip('0').rstrip('.')}p{exponent}"
    else:
        text = str(float(v))
    return f"{float(v)!r} ({text}, 0x{bits:08X})"


def reference(x: np.ndarray, out64: np.ndarray | None = None, out: np.ndarray | None = None):
    """float64 exp(x) rounded to float32 (see the module docstring)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        r64 = np.exp(x, dtype=np.float64, out=out64)
        r = np.empty(x.shape, np.float32) if out is None else out
        r[...] = r64  # overflows to +inf above FLT_MAX, as it must
    return r, r64


def from_bits(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def special_inputs() -> np.ndarray:
    """Every special value and the neighbourhoods of the cutoffs and reduction boundaries."""
    values = [0.0, -0.0, np.inf, -np.inf, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
              FLT_TRUE_MIN, -FLT_TRUE_MIN, 2 * FLT_TRUE_MIN, -2 * FLT_TRUE_MIN,
              FLT_MIN - FLT_TRUE_MIN, -(FLT_MIN - FLT_TRUE_MIN),
              1.0, -1.0, 0.5, -0.5, 2.0 ** -24, -(2.0 ** -24), 2.0 ** -25, -(2.0 ** -25),
              128.0, -128.0, 1e30, -1e30, 2.36e38, -2.36e38]
    neighbourhoods = [OVERFLOW_CUTOFF, DENORMAL_CUTOFF, ZERO_CUTOFF, np.float32(-104.0),
                      np.float32(89.0), np.float32(-100.0 * np.log(2.0)),
                      np.float32(-126.0 * np.log(2.0)), np.float32(-149.0 * np.log(2.0)),
                      np.float32(-150.0 * np.log(2.0)), np.float32(127.0 * np.log(2.0)),
                      np.float32(128.0 * np.log(2.0))]
    # n = round(x*log2e) changes at x = (k + 1/2) ln2: the reduction's worst cases sit there
    neighbourhoods += [np.float32((k + 0.5) * np.log(2.0)) for k in range(-152, 129)]
    for centre in neighbourhoods:
        v = np.float32(centre)
        values.append(v)
        up = down = v
        for _ in range(4):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(-np.inf))
            values += [up, down]
    x = np.array(values, dtype=np.float32)
    nans = from_bits([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF,
                      0x7FA00000, 0xFFC12345, 0x7FBADBAD, 0xFF812345])
    return np.concatenate([x, nans])


def sampled_inputs(rng: np.random.Generator, random_bits: int, dense: int, subnormal: int):
    """Uniform random bit patterns (every exponent), a dense uniform sample of [-104, 89] (where
    exp is neither 0 nor inf), the subnormal-result range [-104, -87.3], and special_inputs()."""
    parts = [
        rng.integers(0, 2 ** 32, size=random_bits, dtype=np.uint64).astype(np.uint32).view(np.float32),
        rng.uniform(-104.0, 89.0, size=dense).astype(np.float32),
        rng.uniform(float(ZERO_CUTOFF) - 0.03, float(DENORMAL_CUTOFF) + 0.03,
                    size=subnormal).astype(np.float32),
        special_inputs(),
    ]
    return np.concatenate(parts)


@dataclass
class Accuracy:
    """Counts and worst cases of kernel results against the reference, over many chunks."""

    label: str
    inputs: int = 0
    normal: int = 0
    normal_hist: list = field(default_factory=lambda: [0] * (NORMAL_ULP + 2))  # 0..NORMAL_ULP, more
    normal_max: int = 0
    normal_worst: tuple | None = None  # (x, got, expected)
    subnormal: int = 0
    subnormal_off: int = 0  # results not bit-equal to the reference
    subnormal_max: int = 0
    subnormal_worst: tuple | None = None
    subnormal_exact_max: float = 0.0  # |y - exp64(x)| / 2^-149 (needs the float64 reference)
    exact: int = 0  # reference +0 or +inf
    nans: int = 0
    fractional_max: float = 0.0  # |y - exp64(x)| / ulp, normal results (informative)
    failures: dict = field(default_factory=dict)  # category -> [count, examples]

    def _fail(self, category: str, x, y, r, ulps=None, limit: int = 5) -> None:
        count, examples = self.failures.setdefault(category, [0, []])
        self.failures[category][0] = count + len(x)
        for i in range(min(limit - len(examples), len(x))):
            extra = f", {int(ulps[i])} ULP" if ulps is not None else ""
            examples.append(f"x={describe(x[i])}: got {describe(y[i])}, "
                            f"expected {describe(r[i])}{extra}")

    def add(self, x: np.ndarray, y: np.ndarray, r: np.ndarray, r64: np.ndarray | None = None):
        """Check y = kernel(x) against r = reference(x) (all float32, same shape, 1-D)."""
        self.inputs += x.size
        nan_in = np.isnan(x)
        yi, ri = y.view(np.int32), r.view(np.int32)
        diff = np.abs(np.subtract(yi, ri, dtype=np.int64))
        finite_ref = np.isfinite(r)
        normal = finite_ref & (r >= FLT_MIN)
        subnormal = (r > 0) & (r < FLT_MIN)
        exact = ~nan_in & ((r == 0) | np.isposinf(r))

        n_nan = int(np.count_nonzero(nan_in))
        self.nans += n_nan
        if n_nan:
            lost = nan_in & ~np.isnan(y)
            if lost.any():
                self._fail("NaN input gave a non-NaN", x[lost], y[lost], r[lost])

        negative = np.signbit(y) & ~np.isnan(y)
        if negative.any():
            self._fail("result with the sign bit set", x[negative], y[negative], r[negative])

        n_normal = int(np.count_nonzero(normal))
        self.normal += n_normal
        if n_normal:
            dn = np.where(normal, diff, -1)
            worst = int(np.argmax(dn))
            if dn[worst] > self.normal_max or self.normal_worst is None:
                self.normal_max = int(dn[worst])
                self.normal_worst = (x[worst], y[worst], r[worst])
            for k in range(NORMAL_ULP + 1):
                self.normal_hist[k] += int(np.count_nonzero(dn == k))
            bad = dn > NORMAL_ULP
            self.normal_hist[NORMAL_ULP + 1] += int(np.count_nonzero(bad))
            if bad.any():
                self._fail(f"normal result more than {NORMAL_ULP} ULP off", x[bad], y[bad],
                           r[bad], diff[bad])
            if r64 is not None:
                # the largest error is among the results 2 ULP off when there are any (their
                # error is >= 1.5 ULP, a 1-ULP result's < 1.5): measure only those, it is cheap
                for least in (2, 1, 0):
                    candidates = dn >= least
                    if candidates.any():
                        break
                yn, rn = y[candidates].astype(np.float64), r64[candidates]
                ulp = np.spacing(r[candidates]).astype(np.float64)
                with np.errstate(invalid="ignore"):
                    self.fractional_max = max(self.fractional_max,
                                              float(np.nanmax(np.abs(yn - rn) / ulp)))

        n_sub = int(np.count_nonzero(subnormal))
        self.subnormal += n_sub
        if n_sub:
            ds = np.where(subnormal, diff, -1)
            worst = int(np.argmax(ds))
            if ds[worst] > self.subnormal_max or self.subnormal_worst is None:
                self.subnormal_max = int(ds[worst])
                self.subnormal_worst = (x[worst], y[worst], r[worst])
            self.subnormal_off += int(np.count_nonzero(ds > 0))
            bad = ds > SUBNORMAL_ULP
            if bad.any():
                self._fail(f"subnormal result more than {SUBNORMAL_ULP} unit of 2^-149 off",
                           x[bad], y[bad], r[bad], diff[bad])
            if r64 is not None:
                units = np.abs(y[subnormal].astype(np.float64) - r64[subnormal]) / 2.0 ** -149
                self.subnormal_exact_max = max(self.subnormal_exact_max, float(np.nanmax(units)))
                far = np.zeros_like(subnormal)
                far[subnormal] = ~(units < SUBNORMAL_EXACT_UNITS)
                if far.any():
                    self._fail(f"subnormal result {SUBNORMAL_EXACT_UNITS} units of 2^-149 or "
                               f"more from exp(x)", x[far], y[far], r[far], diff[far])

        self.exact += int(np.count_nonzero(exact))
        wrong = exact & (yi != ri)
        if wrong.any():
            self._fail("+0 / +inf result not exact", x[wrong], y[wrong], r[wrong])

    def merge(self, other: "Accuracy") -> None:
        self.inputs += other.inputs
        self.normal += other.normal
        self.normal_hist = [a + b for a, b in zip(self.normal_hist, other.normal_hist)]
        if other.normal_worst is not None and (self.normal_worst is None
                                               or other.normal_max > self.normal_max):
            self.normal_max, self.normal_worst = other.normal_max, other.normal_worst
        self.subnormal += other.subnormal
        self.subnormal_off += other.subnormal_off
        if other.subnormal_worst is not None and (self.subnormal_worst is None
                                                  or other.subnormal_max > self.subnormal_max):
            self.subnormal_max, self.subnormal_worst = other.subnormal_max, other.subnormal_worst
        self.exact += other.exact
        self.nans += other.nans
        self.fractional_max = max(self.fractional_max, other.fractional_max)
        self.subnormal_exact_max = max(self.subnormal_exact_max, other.subnormal_exact_max)
        for category, (count, examples) in other.failures.items():
            mine = self.failures.setdefault(category, [0, []])
            mine[0] += count
            mine[1] = (mine[1] + examples)[:5]

    def summary(self) -> str:
        hist = ", ".join(f"{k}: {c}" for k, c in enumerate(self.normal_hist[:NORMAL_ULP + 1]))
        if self.normal_hist[NORMAL_ULP + 1]:
            hist += f", >{NORMAL_ULP}: {self.normal_hist[NORMAL_ULP + 1]}"
        text = (f"exp accuracy [{self.label}, {self.inputs:,} inputs]: "
                f"normal results max {self.normal_max} ULP ({hist})")
        if self.normal_worst is not None:
            x, y, r = self.normal_worst
            text += f" worst at x={describe(x)} got {describe(y)} expected {describe(r)}"
        if self.fractional_max:
            text += f"; max error vs float64 exp {self.fractional_max:.3f} ULP"
        text += (f"; subnormal results max {self.subnormal_max} unit(s) of 2^-149 from the "
                 f"correctly rounded result ({self.subnormal_off:,} of {self.subnormal:,} not "
                 f"correctly rounded)")
        if self.subnormal_exact_max:
            text += f", max {self.subnormal_exact_max:.3f} units from exp(x)"
        text += f"; +0/+inf results {self.exact:,}; NaN inputs {self.nans:,}"
        return text

    def failure_report(self) -> str:
        """'' when everything held; else one line per category, then examples."""
        if not self.failures:
            return ""
        head = "; ".join(f"{count} x {category}" for category, (count, _) in self.failures.items())
        lines = [f"{self.label}: {head}"]
        for category, (count, examples) in self.failures.items():
            lines.append(f"  {category} ({count}):")
            lines += [f"    {e}" for e in examples]
        lines.append(self.summary())
        return "\n".join(lines)

