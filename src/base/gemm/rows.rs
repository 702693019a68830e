//! Token rows laid out for the micro-kernel.

use super::{MR, WASM_ROWS, block_rows};

/// Token rows `[m, k]` laid out for the micro-kernel: `[m / mr rounded up][k][mr]` for
/// blocks of `mr` rows (5 or 6, [`MR`]), missing rows zero.
pub struct PackedRows {
    pub(super) m: usize,
    pub(super) k: usize,
    pub(super) mr: usize,
    pub(super) data: Vec<f32>,
}

impl PackedRows {
    /// Packs `x`: `[m, k]` row-major.
    pub fn new(x: &[f32], m: usize, k: usize) -> Self {
        assert_eq!(x.len(), m * k, "input is not [{m}, {k}]");
        let mr = block_rows(m);
        let blocks = m.div_ceil(mr);
        // Block by block, each written once in order (reading its rows side by side), with
        // no zero fill first: a zeroed buffer and writes `mr` values apart took 3.7% of a
        // batch-32 forward pass (`memset` and this function), for 1/768 of its work.
        let mut data = Vec::with_capacity(blocks * k * mr);
        for r0 in (0..m).step_by(mr) {
            match mr {
                WASM_ROWS => pack_block::<WASM_ROWS>(x, m, k, r0, &mut data),
                5 => pack_block::<5>(x, m, k, r0, &mut data),
                _ => pack_block::<MR>(x, m, k, r0, &mut data),
            }
        }
        debug_assert_eq!(data.len(), blocks * k * mr);
        Self { m, k, mr, data }
    }

    /// `[rows, in]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.m, self.k]
    }
}

/// Appends rows `r0..r0 + R` of `x` ([m, k] row-major) to `data` as one block of
/// [`PackedRows`]: `[k][R]`, rows past `m` zero.
#[inline(always)]
fn pack_block<const R: usize>(x: &[f32], m: usize, k: usize, r0: usize, data: &mut Vec<f32>) {
    let zeros = [0.0; 0];
    let src: [&[f32]; R] = std::array::from_fn(|r| {
        let i = r0 + r;
        if i < m {
            &x[i * k..(i + 1) * k]
        } else {
            &zeros
        }
    });
    if src.iter().all(|row| row.len() == k) {
        // Each row sliced to `k` values, so that indexing by `p < k` needs no check.
        let src = src.map(|row| &row[..k]);
        #[allow(clippy::needless_range_loop)] // `p` indexes all `R` rows at once
        for p in 0..k {
            data.extend_from_slice(&std::array::from_fn::<f32, R, _>(|r| src[r][p]));
        }
    } else {
        for p in 0..k {
            data.extend_from_slice(&std::array::from_fn::<f32, R, _>(|r| {
                src[r].get(p).copied().unwrap_or(0.0)
            }));
        }
    }
}
