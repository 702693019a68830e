//! Token rows laid out for the micro-kernel.

use std::ops::Range;

use super::finish::lanes;
use super::{Claims, block_rows};

/// Token rows `[m, k]` laid out for the micro-kernel: `[m / mr rounded up][k][mr]` for
/// blocks of `mr` rows (`block_rows`: 5 or 6, 8 to 12 for the 512-bit kernel, 2 in wasm),
/// missing rows zero.
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
        Self::strided(x, k, 0, m, k)
    }

    /// Packs columns `c0..c0 + k` of `m` rows of `x`, row-major with `ld` values a row (one
    /// head's columns of a projection's output, without copying them out first).
    pub(super) fn strided(x: &[f32], ld: usize, c0: usize, m: usize, k: usize) -> Self {
        Self::strided_in(x, (ld, c0), m, k, block_rows(m))
    }

    /// Packs `x` ([m, k] row-major) in blocks of `mr` rows, whatever this machine's kernel
    /// would pick: the tests run every kernel at every block size.
    #[cfg(test)]
    pub(super) fn blocked(x: &[f32], m: usize, k: usize, mr: usize) -> Self {
        Self::strided_in(x, (k, 0), m, k, mr)
    }

    /// [`PackedRows::strided`] in blocks of `mr` rows.
    fn strided_in(x: &[f32], (ld, c0): (usize, usize), m: usize, k: usize, mr: usize) -> Self {
        assert!(
            c0 + k <= ld && (m == 0 || x.len() >= (m - 1) * ld + c0 + k),
            "input does not hold [{m}, {k}] from column {c0} of rows of {ld}"
        );
        let blocks = m.div_ceil(mr);
        // Block by block, each written once in order (reading its rows side by side), with
        // no zero fill first: a zeroed buffer and writes `mr` values apart took 3.7% of a
        // batch-32 forward pass (`memset` and this function), for 1/768 of its work.
        let mut data = Vec::with_capacity(blocks * k * mr);
        for r0 in (0..m).step_by(mr) {
            by_rows!(mr, R => pack_block::<R>(x, (ld, c0), m, k, r0, &mut data))
        }
        debug_assert_eq!(data.len(), blocks * k * mr);
        Self { m, k, mr, data }
    }

    /// `[rows, in]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.m, self.k]
    }
}

/// Appends rows `r0..r0 + R` of `x` ([m, k] from column `c0` of rows `ld` apart, `(ld,
/// c0)`) to `data` as one block of [`PackedRows`]: `[k][R]`, rows past `m` zero.
#[inline(always)]
fn pack_block<const R: usize>(
    x: &[f32],
    (ld, c0): (usize, usize),
    m: usize,
    k: usize,
    r0: usize,
    data: &mut Vec<f32>,
) {
    let zeros = [0.0; 0];
    let src: [&[f32]; R] = std::array::from_fn(|r| {
        let i = r0 + r;
        if i < m {
            &x[i * ld + c0..i * ld + c0 + k]
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

impl PackedRows {
    /// Packs `LayerNorm(x)`: each row of `x` ([m, k] row-major) less its mean, divided by
    /// `sqrt(variance + eps)` (the biased variance, as torch's and burn's `layer_norm`),
    /// times `gamma` plus `beta` ([k] each), written straight into the packed layout
    /// instead of into a tensor that is then packed. Mean and variance are sums in f32 over
    /// interleaved lanes ([`lanes`]), within a few ulp of burn's for CLIP's widths.
    pub fn normalized(
        x: &[f32],
        m: usize,
        k: usize,
        gamma: &[f32],
        beta: Option<&[f32]>,
        eps: f32,
    ) -> Self {
        assert_eq!(x.len(), m * k, "input is not [{m}, {k}]");
        assert!(
            gamma.len() == k && beta.is_none_or(|b| b.len() == k),
            "LayerNorm's gamma and beta are not [{k}]"
        );
        let mr = block_rows(m);
        let blocks = m.div_ceil(mr);
        let mut data = Vec::with_capacity(blocks * k * mr);
        let mut normal = vec![0.0f32; mr * k];
        for r0 in (0..m).step_by(mr) {
            let rows = mr.min(m - r0);
            for (r, out) in normal.chunks_exact_mut(k).enumerate() {
                if r < rows {
                    let i = r0 + r;
                    normalize(&x[i * k..(i + 1) * k], gamma, beta, eps, out);
                } else {
                    out.fill(0.0);
                }
            }
            by_rows!(mr, R => pack_block::<R>(&normal, (k, 0), mr, k, 0, &mut data))
        }
        debug_assert_eq!(data.len(), blocks * k * mr);
        Self { m, k, mr, data }
    }
}

/// One row of [`PackedRows::normalized`].
fn normalize(x: &[f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let k = x.len();
    let add = |a: f32, b: f32| a + b;
    let mean = lanes(x, 0.0, |v| v, add) / k as f32;
    let var = lanes(x, 0.0, |v| (v - mean) * (v - mean), add) / k as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for (p, o) in out.iter_mut().enumerate() {
        *o = (x[p] - mean) * inv * gamma[p] + beta.map_or(0.0, |b| b[p]);
    }
}

/// Token rows written in the packed layout ([`PackedRows`]) by several threads at once,
/// each its own range of columns (the next product's inner dimension): the output of one
/// linear layer or attention becomes the next one's packed input without a row-major copy
/// that one thread then packs.
pub struct RowsWriter {
    m: usize,
    k: usize,
    mr: usize,
    /// The packed rows, claimed by column ranges.
    data: Claims,
}

impl RowsWriter {
    /// `[m, k]` rows to be written.
    pub fn new(m: usize, k: usize) -> Self {
        let mr = block_rows(m);
        Self {
            m,
            k,
            mr,
            data: Claims::new(m.div_ceil(mr) * k * mr, 0..k),
        }
    }

    /// Writes columns `cols` of every row from `src` ([m, cols.len()] row-major); each
    /// column may be written once.
    pub fn write(&self, cols: Range<usize>, src: &[f32]) {
        assert!(
            cols.start <= cols.end && cols.end <= self.k,
            "columns {cols:?} outside the rows' {}",
            self.k
        );
        let w = cols.len();
        assert_eq!(src.len(), self.m * w, "source is not [{}, {w}]", self.m);
        // In the packed layout a block's columns `cols` are a run of their own: ranges that
        // do not overlap write values that do not overlap.
        let start = self.data.claim(&cols);
        let (m, k, mr) = (self.m, self.k, self.mr);
        for (b, r0) in (0..m).step_by(mr).enumerate() {
            // SAFETY: block b's columns `cols` are `mr * w` values from `(b * k + cols.start)
            // * mr`, inside the buffer's capacity, claimed by this call alone.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(start.add((b * k + cols.start) * mr), mr * w)
            };
            by_rows!(mr, R => scatter_block::<R>(src, m, w, r0, dst))
        }
    }

    /// The packed rows. Panics unless every column was written.
    pub fn into_rows(self) -> PackedRows {
        // SAFETY: every write filled its columns of every block, padding rows included
        // (`scatter_block` writes zeros there), so once the claimed columns are `0..k` all
        // the blocks' values are set.
        let data = unsafe { self.data.into_vec() };
        PackedRows {
            m: self.m,
            k: self.k,
            mr: self.mr,
            data,
        }
    }
}

/// Rows `r0..r0 + R` of `src` ([m, w] row-major) into `dst` as one block's `w` columns:
/// `[w][R]`, rows past `m` zero.
#[inline(always)]
fn scatter_block<const R: usize>(src: &[f32], m: usize, w: usize, r0: usize, dst: &mut [f32]) {
    let rows: [Option<&[f32]>; R] = std::array::from_fn(|r| {
        let i = r0 + r;
        (i < m).then(|| &src[i * w..(i + 1) * w])
    });
    for (p, out) in dst.chunks_exact_mut(R).enumerate() {
        for (o, row) in out.iter_mut().zip(&rows) {
            *o = row.map_or(0.0, |row| row[p]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.3)
            .collect()
    }

    /// Column ranges written by a [`RowsWriter`] give exactly [`PackedRows::new`]'s layout,
    /// padding rows included, for every block size this machine's kernel picks.
    #[test]
    fn rows_written_by_columns_equal_the_packed_rows() {
        for m in [1, 7, 10, 12, 50] {
            let k = 40;
            let x = values(m, k);
            let writer = RowsWriter::new(m, k);
            for cols in [16..40, 0..16] {
                let src: Vec<f32> = (0..m)
                    .flat_map(|i| x[i * k + cols.start..i * k + cols.end].to_vec())
                    .collect();
                writer.write(cols, &src);
            }
            let got = writer.into_rows();
            let want = PackedRows::new(&x, m, k);
            assert_eq!((got.mr, got.data), (want.mr, want.data), "{m} rows");
        }
    }

    /// [`PackedRows::normalized`] packs a layer norm: against f64 maths, and the same
    /// layout as packing the normalised rows.
    #[test]
    fn normalized_rows_are_a_packed_layer_norm() {
        let (m, k) = (7, 37);
        let x: Vec<f32> = values(m, k).iter().map(|v| v * 3.0 + 1.5).collect();
        let gamma: Vec<f32> = (0..k).map(|p| 0.5 + p as f32 * 0.01).collect();
        let beta: Vec<f32> = (0..k).map(|p| p as f32 * -0.02).collect();
        let eps = 1e-5;
        let got = PackedRows::normalized(&x, m, k, &gamma, Some(&beta), eps);
        let want: Vec<f32> = (0..m)
            .flat_map(|i| {
                let row = &x[i * k..(i + 1) * k];
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / k as f64;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / k as f64;
                let inv = 1.0 / (var + eps as f64).sqrt();
                (0..k).map(move |p| ((row[p] as f64 - mean) * inv) as f32)
            })
            .enumerate()
            .map(|(at, v)| (v as f64 * gamma[at % k] as f64 + beta[at % k] as f64) as f32)
            .collect();
        let packed = PackedRows::new(&want, m, k);
        for (a, b) in got.data.iter().zip(&packed.data) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(got.data.len(), packed.data.len());
    }
}
