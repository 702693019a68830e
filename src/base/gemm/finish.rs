//! The pass after the product: bias, activation (with a vectorisable `exp`) and residual.

use std::ops::Range;

use super::{Activation, QUICK_GELU_SLOPE};

/// The pass after the product: `out = act(out + bias[cols]) + residual[:, cols]` for the
/// values [`product`] wrote (`out`, `ldo` as there); `residual` is [m, n].
pub(super) struct Finish<'a> {
    pub(super) out: *mut f32,
    pub(super) ldo: usize,
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) cols: Range<usize>,
    pub(super) bias: Option<&'a [f32]>,
    pub(super) act: Activation,
    pub(super) residual: Option<&'a [f32]>,
}

impl Finish<'_> {
    /// The pass, with `exp` in fused multiply-adds (`FUSED`, where the target has them) or
    /// separate multiplications and additions. Inlined into each target's wrapper so its
    /// loops vectorise for that target.
    ///
    /// # Safety
    /// `out` holds the claimed columns of `m` rows, `ldo` apart, written by nobody else.
    #[inline(always)]
    pub(super) unsafe fn run<const FUSED: bool>(self) {
        let cols = self.cols;
        let width = cols.len();
        let mut sig = vec![0.0f32; width];
        for i in 0..self.m {
            // SAFETY: row i's claimed columns lie inside the output (caller).
            let row = unsafe { std::slice::from_raw_parts_mut(self.out.add(i * self.ldo), width) };
            if let Some(b) = self.bias {
                for (v, &b) in row.iter_mut().zip(&b[cols.clone()]) {
                    *v += b;
                }
            }
            if self.act == Activation::QuickGelu {
                for (s, &v) in sig.iter_mut().zip(row.iter()) {
                    *s = 1.0 / (1.0 + exp::<FUSED>(-QUICK_GELU_SLOPE * v));
                }
                for (v, &s) in row.iter_mut().zip(&sig) {
                    *v *= s;
                }
            }
            if let Some(res) = self.residual {
                let n = self.n;
                for (v, &r) in row
                    .iter_mut()
                    .zip(&res[i * n + cols.start..i * n + cols.end])
                {
                    *v += r;
                }
            }
        }
    }
}

/// Running values side by side ([`lanes`]).
pub(super) const LANES: usize = 8;

/// `op` folded over `f` of each value of `x`: in [`LANES`] interleaved running values from
/// `init`, which are then folded in order, the tail folded on its own, the two combined
/// last. Side-by-side running values vectorise where one in order cannot (an f32 sum's
/// additions may not be reordered: an in-order sum kept the softmax's whole `exp` loop
/// scalar, 75% of the attention's own time in a text-tower profile). Generic over `f` and
/// `op` (not `dyn Fn`) so that they inline and the lanes vectorise. Used by LayerNorm's
/// mean and variance and by the softmax's max and sum.
#[inline(always)]
pub(super) fn lanes(
    x: &[f32],
    init: f32,
    f: impl Fn(f32) -> f32,
    op: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut acc = [init; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(init, |a, &v| op(a, f(v)));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = op(*a, f(v));
        }
    }
    op(acc.into_iter().fold(init, &op), tail)
}

/// `a * b + c`, fused (one rounding) or not.
#[inline(always)]
pub(super) fn madd<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED { a.mul_add(b, c) } else { a * b + c }
}

/// [`exp`]'s clamp: e^x and 2^n stay normal f32 values in between.
pub(super) const EXP_MIN: f32 = -87.3;
const EXP_MAX: f32 = 88.3;

/// `e^x` in f32, branch-free so the loops above vectorise: Cephes' `expf` (range reduction
/// by ln 2 in two parts, degree-5 polynomial), within 2 ulp of the exact value (3 without
/// fused multiply-adds, which wasm lacks: `f32::mul_add` there is a slow library call);
/// inputs are clamped to [-87.3, 88.3], where `e^x` and the power of two it is built from
/// are normal f32 values.
#[inline(always)]
pub(super) fn exp<const FUSED: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const TWO_23: f32 = 8_388_608.0;
    // This form (max/min, and the bit trick below for 2^n) vectorises; the first version,
    // with `clamp` and `n as i32`, compiled to per-lane scalar code (profile). In wasm
    // `f32::max` is a call (`fmaxf`: wasm's `f32.max` treats NaN differently), so the clamp
    // is two selects there.
    #[allow(clippy::manual_clamp)]
    let x = if cfg!(target_arch = "wasm32") {
        let x = if x < EXP_MIN { EXP_MIN } else { x };
        if x > EXP_MAX { EXP_MAX } else { x }
    } else {
        x.max(EXP_MIN).min(EXP_MAX)
    };
    let n = madd::<FUSED>(x, LOG2E, 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = madd::<FUSED>(p, r, 1.398_199_9e-3);
    let p = madd::<FUSED>(p, r, 8.333_452e-3);
    let p = madd::<FUSED>(p, r, 4.166_579_6e-2);
    let p = madd::<FUSED>(p, r, 1.666_666_5e-1);
    let p = madd::<FUSED>(p, r, 0.5);
    let y = madd::<FUSED>(p * r, r, r) + 1.0;
    // 2^n: n + 127 is in 1..=254, so adding 2^23 puts it in the low mantissa bits, and
    // shifting those into the exponent field gives 2^n's bits.
    y * f32::from_bits((n + (127.0 + TWO_23)).to_bits() << 23)
}

#[cfg(test)]
mod tests {
    /// `exp` against f64 over its range: within 2 ulp with fused multiply-adds, 3 without.
    #[test]
    fn exp_is_within_a_few_ulp() {
        for (fused, bound) in [(true, 2), (false, 3)] {
            let mut worst = 0u32;
            let mut x = -87.0f32;
            while x < 88.0 {
                let want = (x as f64).exp() as f32;
                let got = if fused {
                    super::exp::<true>(x)
                } else {
                    super::exp::<false>(x)
                };
                worst = worst.max(got.to_bits().abs_diff(want.to_bits()));
                x += 0.0137;
            }
            assert!(worst <= bound, "exp (fused: {fused}) off by {worst} ulp");
        }
    }
}
