//! The packed GEMM's test cases, shared by the native tests (`tests/gemm.rs`) and the
//! WebAssembly ones (`tests/wasm/gemm_check.rs`), which include this file by path: the
//! shapes, the inputs, and the defining chain of multiply-adds each value must equal.

/// ViT-B/32's projections (50 and 77 tokens, a 400-row part; natively the rows go in blocks
/// of 5 or 6, in wasm in pairs) and ragged shapes: row and column tails, inner dimensions
/// that are not a multiple of the 256-wide blocks, a single row.
pub const SHAPES: [(usize, usize, usize); 8] = [
    (12, 96, 48),
    (50, 768, 768),
    (77, 512, 2048),
    (400, 768, 96),
    (50, 3072, 128),
    (1, 64, 16),
    (7, 300, 37),
    (13, 257, 200),
];

/// Values in [-1, 1) from SplitMix64 (as `monoscope::base::SplitMix`).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `x · w + b` ([m, k] x [k, n] row-major), every value one chain over `p` in order, then
/// the bias: fused multiply-adds (`fused`, the x86_64 kernel) or a multiplication then an
/// addition each step (WebAssembly, which has no fused multiply-add).
pub fn chain(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    [m, k, n]: [usize; 3],
    fused: bool,
) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                let (a, v) = (x[i * k + p], w[p * n + j]);
                acc = if fused {
                    a.mul_add(v, acc)
                } else {
                    acc + a * v
                };
            }
            out[i * n + j] = acc + b.map_or(0.0, |b| b[j]);
        }
    }
    out
}

/// Output columns `0..n` cut into `parts` ranges that start at multiples of `nr` (panels).
pub fn ranges(n: usize, parts: usize, nr: usize) -> Vec<std::ops::Range<usize>> {
    let step = n.div_ceil(parts).div_ceil(nr).max(1) * nr;
    (0..n).step_by(step).map(|s| s..(s + step).min(n)).collect()
}

/// How many values of `got` differ from `want` in any bit.
pub fn differing(got: &[f32], want: &[f32]) -> usize {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .filter(|(g, w)| g.to_bits() != w.to_bits())
        .count()
}
