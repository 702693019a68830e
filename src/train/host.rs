//! Host-side building blocks of the hand-written training step ([`super::sparse`]): the
//! packed GEMM over rows and dot products. Every output value is computed by one call in an
//! order fixed by the data alone, so results do not depend on the thread count.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::tensor::{Device, Tensor, TensorData};

use crate::base::gemm::{self, Activation, ColumnWriter, PackedRows, PackedWeight};
use crate::base::host::host_vec;
use crate::base::par::par_map;
use crate::dict::Sae;
use crate::error::Result;

/// An SAE's parameters read back to the host for one hand-written step.
pub(super) struct HostSae {
    /// [d, K]
    pub w_enc: Vec<f32>,
    /// [K]
    pub b_enc: Vec<f32>,
    /// [K, d]
    pub w_dec: Vec<f32>,
    /// [d]
    pub b_dec: Vec<f32>,
    /// Whether inputs are centred on b_dec before the encoder.
    pub center: bool,
}

impl HostSae {
    /// Reads `sae`'s parameters.
    pub fn read(sae: &Sae) -> Result<Self> {
        Ok(HostSae {
            w_enc: host_vec(sae.w_enc.val().inner())?,
            b_enc: host_vec(sae.b_enc.val().inner())?,
            w_dec: host_vec(sae.w_dec.val().inner())?,
            b_dec: host_vec(sae.b_dec.val().inner())?,
            center: sae.centers_input(),
        })
    }

    /// The encoder's input: x - b_dec where inputs are centred, else x. [n, d]
    pub fn centred(&self, x: &[f32]) -> Vec<f32> {
        let mut xc = x.to_vec();
        if self.center {
            for row in xc.chunks_mut(self.b_dec.len()) {
                row.iter_mut().zip(&self.b_dec).for_each(|(v, b)| *v -= b);
            }
        }
        xc
    }

    /// db_dec = Σ_b dx̂_b, less W_enc db_enc where inputs are centred (the centring's
    /// share). dx̂ [n, d], db_enc [K] -> [d]
    pub fn b_dec_grad(&self, dx_hat: &[f32], g_b_enc: &[f32]) -> Vec<f32> {
        let d = self.b_dec.len();
        let mut g = vec![0f32; d];
        for row in dx_hat.chunks(d) {
            g.iter_mut().zip(row).for_each(|(g, v)| *g += v);
        }
        if self.center {
            for (g, w) in g.iter_mut().zip(self.w_enc.chunks(g_b_enc.len().max(1))) {
                *g -= dot(w, g_b_enc);
            }
        }
        g
    }
}

/// A step's gradients of `sae`'s parameters (flattened, row-major), keyed by parameter, on
/// `device`; a frozen decoder (`g_dec` None) has none.
pub(super) fn sae_grads(
    sae: &Sae,
    g_enc: Tensor<1>,
    g_b_enc: Vec<f32>,
    g_dec: Option<Vec<f32>>,
    g_b_dec: Vec<f32>,
    device: &Device,
) -> HashMap<ParamId, Tensor<1>> {
    let flat = |v: Vec<f32>| {
        let len = v.len();
        Tensor::<1>::from_data(TensorData::new(v, [len]), device)
    };
    let mut grads = HashMap::new();
    grads.insert(sae.w_enc.id, g_enc);
    grads.insert(sae.b_enc.id, flat(g_b_enc));
    if let Some(g) = g_dec {
        grads.insert(sae.w_dec.id, flat(g));
    }
    grads.insert(sae.b_dec.id, flat(g_b_dec));
    grads
}

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

/// Defines `fn $name(args) -> ret`, which runs `$any(args)` compiled with 256-bit vectors
/// where the CPU has AVX2 (the crate's x86_64 baseline is SSE2), else as it is. `$any` is
/// `#[inline(always)]`, so each copy is compiled for its own target features.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident => $any:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $any($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is present.
                    return unsafe { wide($($arg),*) };
                }
            }
            $any($($arg),*)
        }
    };
}
pub(super) use avx2_dispatch;

avx2_dispatch!(
    /// `a · b`, summed in [`DOT_LANES`] interleaved partial sums.
    pub(super) fn dot => dot_any(a: &[f32], b: &[f32]) -> f32
);

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
