//! Host-side building blocks of the hand-written training step ([`super::sparse`]): the
//! packed GEMM over rows and dot products. Every output value is computed by one call in an
//! order fixed by the data alone, so results do not depend on the thread count.

use burn::tensor::{Device, Tensor, TensorData};

use crate::base::gemm::{self, Activation, ColumnWriter, PackedRows, PackedWeight};
use crate::base::host::host_vec;
use crate::base::par::par_map;
use crate::error::Result;

/// a w + b. [m, k] x [k, n] (+ [n]) -> [m, n]
///
/// With the packed GEMM ([`gemm::preferred`]) each core multiplies its own rows (1.2x
/// flex's GEMM at [4096, 512] x [512, 4096] on 2 cores, the bias added in the same pass;
/// its values do not depend on how rows are shared out); otherwise flex's GEMM on `device`.
pub(super) fn product(
    a: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    k: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let (m, n) = (a.len() / k.max(1), w.len() / k.max(1));
    if !gemm::preferred() {
        let at = Tensor::<2>::from_data(TensorData::new(a.to_vec(), [m, k]), device);
        let wt = Tensor::<2>::from_data(TensorData::new(w.to_vec(), [k, n]), device);
        let out = at.matmul(wt);
        return host_vec(match b {
            Some(b) => {
                out + Tensor::<1>::from_data(TensorData::new(b.to_vec(), [n]), device)
                    .unsqueeze::<2>()
            }
            None => out,
        });
    }
    let packed = PackedWeight::new(w, k, n, b);
    let parts = par_map(m, |rows| {
        let out = ColumnWriter::new(rows.len(), 0..n);
        let x = PackedRows::new(&a[rows.start * k..rows.end * k], rows.len(), k);
        out.write(&x, &packed, 0..n, Activation::Identity, None);
        out.into_vec()
    });
    Ok(parts.concat())
}

/// Lanes of [`dot`]'s partial sums: independent chains (two 256-bit vectors, four 128-bit
/// ones), fixed so that a dot product has the same bits whatever the vector width.
const DOT_LANES: usize = 16;

/// `a · b`, summed in [`DOT_LANES`] interleaved partial sums.
#[inline]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present.
        return unsafe { dot_avx2(a, b) };
    }
    dot_any(a, b)
}

/// [`dot_any`] compiled with 256-bit vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_any(a, b)
}

#[inline(always)]
fn dot_any(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; DOT_LANES];
    let (ca, cb) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..DOT_LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A matrix operand on the host: element (i, j) at `data[i * rs + j * cs]`, so a transpose
/// is the same buffer with the strides swapped.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major [.., cols] matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major [.., cols] matrix.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// Panics unless an [r, c] matrix fits in `data` (what makes the raw pointers below
    /// safe to read).
    fn check(&self, r: usize, c: usize) {
        if r > 0 && c > 0 {
            let last = (r - 1) * self.rs + (c - 1) * self.cs;
            assert!(last < self.data.len(), "a [{r}, {c}] view past its buffer");
        }
    }
}

/// `lhs rhs`: [m, k] x [k, n] -> [m, n] row-major, on gemm's kernels (the crate burn-flex's
/// GEMM calls, with its runtime choice of AVX-512 / AVX2 / SIMD128 kernels), which read
/// strided operands in place. Shared over the cores natively; gemm splits the output, never
/// the inner dimension, so each value is summed in the same order on any thread count.
pub(super) fn matmul(m: usize, k: usize, n: usize, lhs: View<'_>, rhs: View<'_>) -> Vec<f32> {
    lhs.check(m, k);
    rhs.check(k, n);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    #[cfg(not(target_arch = "wasm32"))]
    let parallelism = ::gemm::Parallelism::Rayon(0);
    #[cfg(target_arch = "wasm32")]
    let parallelism = ::gemm::Parallelism::None;
    // SAFETY: `check` bounds every operand read; `out` holds [m, n] row-major; beta = 1 and
    // read_dst = false, so out = lhs rhs.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    out
}
