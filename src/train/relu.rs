//! The training step of the ReLU and JumpReLU SAEs with hand-written gradients (issue 12).
//!
//! A ReLU code keeps about half of its latents at initialisation (a JumpReLU code, whose
//! thresholds start at 0, as many), so unlike TopK ([`super::sparse`]) all five products
//! stay dense. What autodiff adds around them is element-wise passes over [n, K] tensors
//! (bias, the gate, the penalty and its gradient, the gate's mask, column sums): about a
//! quarter of its step on the CPU backend. Here each product writes a host buffer and the
//! element-wise work is two passes over [n, K]:
//!
//! - pre = (x - b_dec) W_enc + b_enc (the packed GEMM, bias fused). ReLU: z = ReLU(pre) in
//!   place, with s_j = Σ_b z_bj. JumpReLU: z = pre H(pre - θ) (pre kept), with the counts
//!   Σ_b H and Σ_b w_bj, w_bj = 1{|pre_bj - θ_j| < ε/2} (the rectangle kernel's window).
//! - x̂ = z W_dec + b_dec; r = x̂ - x; MSE = mean_b |r_b|²; dx̂ = 2r/n; dz = dx̂ W_decᵀ.
//! - ReLU: L1 = λ mean_b Σ_j z_bj ν_j with ν_j = |W_dec[j]|, so c = λ/n is its gradient per
//!   z_bj; dpre = (dz + c ν) where z > 0 (exactly where pre > 0), else 0; dW_dec gets
//!   c s_j W_dec[j] / ν_j more.
//! - JumpReLU (Rajamanoharan et al. 2024, eqs. 9-11; `losses::sae_loss`): L0 = λ mean_b
//!   Σ_j H(pre_bj - θ_j); dpre = dz H (nothing passes through H); the straight-through
//!   estimators give dθ_j = -(θ_j/ε) Σ_b dz_bj w_bj - (λ/(n ε)) Σ_b w_bj.
//! - db_enc = Σ_b dpre_b; dW_dec = zᵀ dx̂ (+ ReLU's term); dW_enc = (x - b_dec)ᵀ dpre;
//!   db_dec = Σ_b dx̂_b - W_enc db_enc (the centring's share).
//!
//! The four products after the encoder run on gemm's kernels (the ones burn-flex calls),
//! reading transposed operands through strides. These are the gradients autodiff computes
//! for `losses::sae_loss`'s `relu` and `jumprelu` kinds in another summation order;
//! `tests/train_sparse.rs` runs both side by side. Column sums go over fixed blocks of rows,
//! then the blocks in order, so every value's order is fixed by the batch, whatever the
//! thread count.

use burn::tensor::{Device, Tensor, TensorData};

use super::host::{HostSae, View, avx2_dispatch, dot, matmul, product, sae_grads};
use super::sparse::Step;
use crate::base::host::host_vec;
use crate::base::par::{par_rows, par_rows_map};
use crate::dict::{DictConfig, DictKind, Sae};
use crate::error::{Error, Result};

/// Rows per block of the column sums: each block's sums are one call's, so the blocks
/// (and the order of every sum) do not depend on how rows are shared out.
const SUM_ROWS: usize = 64;

/// The gradients of `weight` x the loss of one ReLU or JumpReLU step of `sae` on `x`
/// ([n, d] row-major, half images, half texts); `aux` is the L1 or L0 term. `device` is the
/// plain device the gradients are returned on.
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
    let jump = match (dict.kind, &sae.threshold) {
        (DictKind::Jumprelu, Some(t)) => Some(Jump {
            theta: host_vec(t.val().inner())?,
            half_width: (dict.bandwidth / 2.0) as f32,
        }),
        (DictKind::Jumprelu, None) => {
            return Err(Error::Invalid("a JumpReLU SAE without thresholds".into()));
        }
        _ => None,
    };
    let norms: Vec<f32> = w_dec.chunks(d).map(|row| dot(row, row).sqrt()).collect(); // [K]

    // x - b_dec, then pre = (x - b_dec) W_enc + b_enc and the code z, with column sums:
    // ReLU s = Σ_b z_b (z in place of pre); JumpReLU Σ_b H and Σ_b w (pre kept). [n, K]
    let xc = host.centred(x);
    let mut pre = product(&xc, &host.w_enc, Some(&host.b_enc), d, device)?;
    let mut z = if jump.is_some() {
        pre.clone()
    } else {
        Vec::new()
    };
    let code = if jump.is_some() { &mut z } else { &mut pre };
    let sums = par_rows_map(code, features * SUM_ROWS, |_, block| {
        let (mut first, mut window) = (vec![0f32; features], vec![0f32; features]);
        let finite = block.chunks_mut(features).fold(true, |f, row| {
            f & match &jump {
                None => relu_row(row, &mut first),
                Some(j) => jump_row(row, &j.theta, j.half_width, &mut first, &mut window),
            }
        });
        (finite, first, window)
    });
    if sums.iter().any(|(f, _, _)| !f) {
        return Err(Error::Invalid(
            "training diverged (non-finite pre-activations)".into(),
        ));
    }
    let (first, window): (Vec<_>, Vec<_>) = sums.into_iter().map(|(_, s, w)| (s, w)).unzip();
    let (first, window) = (
        column_total(first.into_iter(), features),
        column_total(window.into_iter(), features),
    );
    // ReLU's code replaced its pre-activations; JumpReLU keeps both.
    let (z, pre) = if jump.is_some() { (z, pre) } else { (pre, z) };

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
    // L1 = λ Σ_j s_j ν_j / n; L0 = λ Σ_j (Σ_b H_bj) / n.
    let penalty = match &jump {
        None => {
            dict.l1
                * first
                    .iter()
                    .zip(&norms)
                    .map(|(s, v)| *s as f64 * *v as f64)
                    .sum::<f64>()
                / n as f64
        }
        Some(_) => dict.l0 * first.iter().map(|s| *s as f64).sum::<f64>() / n as f64,
    };
    let scale = 2.0 * weight / n as f32;
    let dx_hat: Vec<f32> = r.iter().map(|v| v * scale).collect();
    let c = (dict.l1 * weight as f64 / n as f64) as f32;

    // dz = dx̂ W_decᵀ, gated in place into dpre, with db_enc (and JumpReLU's Σ_b dz w). [n, K]
    let mut dpre = matmul(
        n,
        d,
        features,
        View::rows(&dx_hat, d),
        View::transposed(w_dec, d),
    );
    let sums = par_rows_map(&mut dpre, features * SUM_ROWS, |block, g| {
        let at = block * features * SUM_ROWS;
        let mut sums = [vec![0f32; features], vec![0f32; features]];
        let [enc, theta] = &mut sums;
        for (i, g) in g.chunks_mut(features).enumerate() {
            let row = at + i * features..at + (i + 1) * features;
            match &jump {
                None => gate_row(g, &z[row], &norms, c, enc),
                Some(j) => jump_grad_row(g, &pre[row], &j.theta, j.half_width, enc, theta),
            }
        }
        sums
    });
    let (enc, theta): (Vec<_>, Vec<_>) = sums.into_iter().map(|[e, t]| (e, t)).unzip();
    let g_b_enc = column_total(enc.into_iter(), features);

    // dW_dec = zᵀ dx̂ (+ c s_j W_dec[j] / ν_j for ReLU). [K, d]
    let mut g_dec = matmul(
        features,
        n,
        d,
        View::transposed(&z, features),
        View::rows(&dx_hat, d),
    );
    if jump.is_none() {
        par_rows(&mut g_dec, d, |j, g| {
            let f = c * first[j] / norms[j];
            for (g, w) in g.iter_mut().zip(&w_dec[j * d..(j + 1) * d]) {
                *g += f * w;
            }
        });
    }
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
    let mut grads = sae_grads(sae, g_enc, g_b_enc, Some(g_dec), g_b_dec, device);
    if let (Some(jump), Some(t)) = (&jump, &sae.threshold) {
        // dθ_j = -(θ_j/ε) Σ_b dz_bj w_bj - weight (λ/(n ε)) Σ_b w_bj.
        let eps = dict.bandwidth as f32;
        let l0 = (weight as f64 * dict.l0 / (n as f64 * dict.bandwidth)) as f32;
        let dz_window = column_total(theta.into_iter(), features);
        let g: Vec<f32> = (0..features)
            .map(|j| -(jump.theta[j] / eps) * dz_window[j] - l0 * window[j])
            .collect();
        grads.insert(
            t.id,
            Tensor::<1>::from_data(TensorData::new(g, [features]), device),
        );
    }
    Ok(Step {
        mse,
        aux: Some(penalty),
        grads,
    })
}

/// A JumpReLU code's thresholds θ [K] and half the kernel's bandwidth ε/2.
struct Jump {
    theta: Vec<f32>,
    half_width: f32,
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
    /// `row` = `row` H(`row` - θ) in place (a pre-activation row becomes a code row); adds
    /// H to `open` and the kernel's window 1{|row - θ| < half_width} to `window`; whether
    /// every value was finite.
    fn jump_row => jump_row_any(
        row: &mut [f32],
        theta: &[f32],
        half_width: f32,
        open: &mut [f32],
        window: &mut [f32],
    ) -> bool
);

#[inline(always)]
fn jump_row_any(
    row: &mut [f32],
    theta: &[f32],
    half_width: f32,
    open: &mut [f32],
    window: &mut [f32],
) -> bool {
    let n = row.len();
    let (theta, open, window) = (&theta[..n], &mut open[..n], &mut window[..n]);
    let mut finite = true;
    for i in 0..n {
        finite &= row[i].is_finite();
        let u = row[i] - theta[i];
        let h = u > 0.0;
        row[i] = if h { row[i] } else { 0.0 };
        open[i] += if h { 1.0 } else { 0.0 };
        window[i] += if u.abs() < half_width { 1.0 } else { 0.0 };
    }
    finite
}

avx2_dispatch!(
    /// `g` (a row of dz) = `g` H(pre - θ) in place, added to `enc`; Σ g over the kernel's
    /// window |pre - θ| < half_width added to `theta`.
    fn jump_grad_row => jump_grad_row_any(
        g: &mut [f32],
        pre: &[f32],
        th: &[f32],
        half_width: f32,
        enc: &mut [f32],
        theta: &mut [f32],
    )
);

#[inline(always)]
fn jump_grad_row_any(
    g: &mut [f32],
    pre: &[f32],
    th: &[f32],
    half_width: f32,
    enc: &mut [f32],
    theta: &mut [f32],
) {
    let n = g.len();
    let (pre, th, enc, theta) = (&pre[..n], &th[..n], &mut enc[..n], &mut theta[..n]);
    for i in 0..n {
        let u = pre[i] - th[i];
        theta[i] += if u.abs() < half_width { g[i] } else { 0.0 };
        g[i] = if u > 0.0 { g[i] } else { 0.0 };
        enc[i] += g[i];
    }
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
