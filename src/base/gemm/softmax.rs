//! Attention's softmax on host values: the scale, the additive mask and the softmax in one
//! pass over each row, with the fused pass's vectorisable `exp` (flex ran four passes, its
//! `exp` one scalar `expf` call per value: 2.5% of a batch-32 forward pass).

use super::finish::{EXP_MIN, exp, lanes};

/// `row = softmax(row * scale + mask)` for each `len`-value row of `values`; `mask(r)` is
/// row r's additive mask (`len` values) or `None`. A row's largest value is subtracted
/// before `exp`, as in every softmax, so masked entries (a large negative value) become 0.
///
/// Inlined into each architecture's wrapper (`softmax_rows`), so that its loops vectorise
/// for that target.
#[inline(always)]
pub(super) fn run<'m, const FUSED: bool>(
    values: &mut [f32],
    len: usize,
    scale: f32,
    mask: impl Fn(usize) -> Option<&'m [f32]>,
) {
    if len == 0 {
        return;
    }
    for (r, row) in values.chunks_exact_mut(len).enumerate() {
        match mask(r) {
            Some(m) => {
                for (v, &m) in row.iter_mut().zip(&m[..len]) {
                    *v = *v * scale + m;
                }
            }
            None => row.iter_mut().for_each(|v| *v *= scale),
        }
        // A select rather than `f32::max`, which is a call (`fmaxf`) in wasm; NaNs are
        // passed over either way.
        let max = lanes(
            row,
            f32::NEG_INFINITY,
            |v| v,
            |a, b| if b > a { b } else { a },
        );
        for v in row.iter_mut() {
            // Below `exp`'s clamp e^x is under f32's smallest normal value: 0, as in flex
            // (masked entries, -1e9, give exactly 0 there too).
            let x = *v - max;
            let e = exp::<FUSED>(x);
            *v = if x < EXP_MIN { 0.0 } else { e };
        }
        // The row's max and sum in lanes ([`lanes`]), so that this loop vectorises.
        let sum = lanes(row, 0.0, |v| v, |a, b| a + b);
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `row = softmax(row * scale + mask(r))` for each `len`-value row r of `values` (attention
/// scores; `mask(r)`: row r's additive mask, at least `len` values, or `None`), one pass a
/// row with a vectorised `exp` (within 2 ulp; 3 in wasm, without fused multiply-adds).
pub fn softmax_rows<'m>(
    values: &mut [f32],
    len: usize,
    scale: f32,
    mask: impl Fn(usize) -> Option<&'m [f32]>,
) {
    assert!(
        len == 0 || values.len().is_multiple_of(len),
        "{} values are not rows of {len}",
        values.len()
    );
    #[cfg(target_arch = "x86_64")]
    if super::available() {
        // SAFETY: AVX2 and FMA are present (`available`).
        return unsafe { super::x86::softmax_rows(values, len, scale, mask) };
    }
    run::<false>(values, len, scale, mask)
}

#[cfg(test)]
mod tests {
    /// Against f64 maths: rows with and without a mask, masked entries exactly 0, within
    /// a few f32 ulp (the `exp` is within 2-3 ulp, the sum adds a few roundings).
    #[test]
    fn softmax_rows_match_f64() {
        let len = 7;
        let mut values: Vec<f32> = (0..3 * len)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.9)
            .collect();
        let input = values.clone();
        let mask: Vec<f32> = (0..len).map(|j| if j > 3 { -1e9 } else { 0.5 }).collect();
        let masked = |r: usize| (r == 1).then_some(&mask[..]);
        super::softmax_rows(&mut values, len, 0.125, masked);
        for r in 0..3 {
            let row: Vec<f64> = (0..len)
                .map(|j| input[r * len + j] as f64 * 0.125 + masked(r).map_or(0.0, |m| m[j] as f64))
                .collect();
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            for j in 0..len {
                let want = ((row[j] - max).exp() / sum) as f32;
                let got = values[r * len + j];
                if r == 1 && j > 3 {
                    assert_eq!(got, 0.0, "masked entry {j}");
                } else {
                    assert!(
                        (got - want).abs() <= 4.0 * f32::EPSILON * want,
                        "row {r} col {j}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
