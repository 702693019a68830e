//! The ReLU SAE's training step with hand-written gradients (issue 12).
//!
//! A ReLU code keeps about half of its latents at initialisation, so unlike TopK
//! ([`super::sparse`]) all five products stay dense. What autodiff adds around them is
//! element-wise passes over [n, K] tensors (bias, ReLU, the L1 term and its gradient, the
//! ReLU's mask, column sums): about a quarter of its step on the CPU backend. Here each
//! product writes a host buffer and the element-wise work is two passes over [n, K]:
//!
//! - pre = (x - b_dec) W_enc + b_enc (the packed GEMM, bias fused); z = ReLU(pre) in place,
//!   with s_j = Σ_b z_bj.
//! - x̂ = z W_dec + b_dec; r = x̂ - x; MSE = mean_b |r_b|²; dx̂ = 2r/n.
//! - L1 = λ mean_b Σ_j z_bj ν_j with ν_j = |W_dec[j]|, so c = λ/n is its gradient per z_bj.
//! - dpre = (dx̂ W_decᵀ + c ν) where z > 0, else 0 (z > 0 exactly where pre > 0), in place,
//!   with db_enc = Σ_b dpre_b.
//! - dW_dec = zᵀ dx̂ + c s_j W_dec[j] / ν_j; dW_enc = (x - b_dec)ᵀ dpre;
//!   db_dec = Σ_b dx̂_b - W_enc db_enc (the centring's share).
//!
//! The four products after the encoder run on gemm's kernels (the ones burn-flex calls),
//! reading transposed operands through strides. These are the gradients autodiff computes
//! for `losses::sae_loss`'s `relu` kind in another summation order; `tests/train_sparse.rs`
//! runs both side by side. Column sums go over fixed blocks of rows, then the blocks in
//! order, so every value's order is fixed by the batch, whatever the thread count.

use burn::tensor::{Device, Tensor, TensorData};

use super::host::{HostSae, View, avx2_dispatch, dot, matmul, product, sae_grads};
use super::sparse::Step;
use crate::base::par::{par_rows, par_rows_map};
use crate::dict::{DictConfig, Sae};
use crate::error::{Error, Result};

/// Rows per block of the column sums: each block's sums are one call's, so the blocks
/// (and the order of every sum) do not depend on how rows are shared out.
const SUM_ROWS: usize = 64;

/// The gradients of `weight` x the loss of one ReLU step of `sae` on `x` ([n, d]
/// row-major, half images, half texts); `aux` is the L1 term. `device` is the plain device
/// the gradients are returned on.
pub fn relu_step(
    sae: &Sae,
    dict: &DictConfig,
    x: &[f32],
    weight: f32,
    device: &Device,
) -> Result<Step> {
    let (d, features) = (dict.d, dict.features);
    let n = x.len() / d;
    let host = HostSae::read(sae)?;
    let (w_dec, b_dec) = (&host.w_dec, &host.b_dec);
    let norms: Vec<f32> = w_dec.chunks(d).map(|row| dot(row, row).sqrt()).collect(); // [K]

    // x - b_dec, then pre = (x - b_dec) W_enc + b_enc, ReLU'd in place into z. [n, K]
    let xc = host.centred(x);
    let mut z = product(&xc, &host.w_enc, Some(&host.b_enc), d, device)?;
    let finite = par_rows_map(&mut z, features * SUM_ROWS, |_, block| {
        let mut sums = vec![0f32; features];
        let finite = block
            .chunks_mut(features)
            .fold(true, |f, row| relu_row(row, &mut sums) & f);
        (finite, sums)
    });
    if finite.iter().any(|(f, _)| !f) {
        return Err(Error::Invalid(
            "training diverged (non-finite pre-activations)".into(),
        ));
    }
    let fired = column_total(finite.into_iter().map(|(_, s)| s), features); // s [K]

    // x̂ and the residual r = x̂ - x. [n, d]
    let mut r = matmul(
        n,
        features,
        d,
        View::rows(&z, features),
        View::rows(w_dec, d),
    );
    par_rows(&mut r, d, |b, row| {
        for (i, v) in row.iter_mut().enumerate() {
            *v += b_dec[i] - x[b * d + i];
        }
    });
    let mse = r.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / n as f64;
    let l1 = dict.l1
        * fired
            .iter()
            .zip(&norms)
            .map(|(s, v)| *s as f64 * *v as f64)
            .sum::<f64>()
        / n as f64;
    let scale = 2.0 * weight / n as f32;
    let dx_hat: Vec<f32> = r.iter().map(|v| v * scale).collect();
    let c = (dict.l1 * weight as f64 / n as f64) as f32;

    // dpre = (dx̂ W_decᵀ + c ν) where z > 0, with its column sums (db_enc). [n, K]
    let mut dpre = matmul(
        n,
        d,
        features,
        View::rows(&dx_hat, d),
        View::transposed(w_dec, d),
    );
    let sums = par_rows_map(&mut dpre, features * SUM_ROWS, |block, g| {
        let z = &z[block * features * SUM_ROWS..][..g.len()];
        let mut sums = vec![0f32; features];
        for (g, z) in g.chunks_mut(features).zip(z.chunks(features)) {
            gate_row(g, z, &norms, c, &mut sums);
        }
        sums
    });
    let g_b_enc = column_total(sums.into_iter(), features);

    // dW_dec = zᵀ dx̂ + c s_j W_dec[j] / ν_j. [K, d]
    let mut g_dec = matmul(
        features,
        n,
        d,
        View::transposed(&z, features),
        View::rows(&dx_hat, d),
    );
    par_rows(&mut g_dec, d, |j, g| {
        let f = c * fired[j] / norms[j];
        for (g, w) in g.iter_mut().zip(&w_dec[j * d..(j + 1) * d]) {
            *g += f * w;
        }
    });
    // dW_enc = (x - b_dec)ᵀ dpre. [d, K]
    let g_enc = matmul(
        d,
        n,
        features,
        View::transposed(&xc, d),
        View::rows(&dpre, features),
    );
    let g_b_dec = host.b_dec_grad(&dx_hat, &g_b_enc);
    let g_enc = Tensor::<1>::from_data(TensorData::new(g_enc, [d * features]), device);
    let grads = sae_grads(sae, g_enc, g_b_enc, Some(g_dec), g_b_dec, device);
    Ok(Step {
        mse,
        aux: Some(l1),
        grads,
    })
}

/// The sum of per-block column sums, in block order. [K]
fn column_total(blocks: impl Iterator<Item = Vec<f32>>, features: usize) -> Vec<f32> {
    let mut total = vec![0f32; features];
    for block in blocks {
        total.iter_mut().zip(block).for_each(|(t, s)| *t += s);
    }
    total
}

avx2_dispatch!(
    /// `row` = ReLU(`row`) in place, added to `sums`; whether every value was finite.
    fn relu_row => relu_row_any(row: &mut [f32], sums: &mut [f32]) -> bool
);

#[inline(always)]
fn relu_row_any(row: &mut [f32], sums: &mut [f32]) -> bool {
    let sums = &mut sums[..row.len()];
    let mut finite = true;
    for i in 0..row.len() {
        finite &= row[i].is_finite();
        row[i] = row[i].max(0.0);
        sums[i] += row[i];
    }
    finite
}

avx2_dispatch!(
    /// `g` = `g` + c ν where z > 0, else 0 (branch-free, so it vectorises), added to `sums`.
    fn gate_row => gate_row_any(g: &mut [f32], z: &[f32], norms: &[f32], c: f32, sums: &mut [f32])
);

#[inline(always)]
fn gate_row_any(g: &mut [f32], z: &[f32], norms: &[f32], c: f32, sums: &mut [f32]) {
    let n = g.len();
    let (z, norms, sums) = (&z[..n], &norms[..n], &mut sums[..n]);
    for i in 0..n {
        let t = g[i] + c * norms[i];
        g[i] = if z[i] > 0.0 { t } else { 0.0 };
        sums[i] += g[i];
    }
}
