//! The TopK SAE's training step with hand-written gradients and a sparse decoder (issue 12).
//!
//! Through autodiff a TopK step is five dense GEMMs of [n, d] x [d, K] size: the encoder,
//! the decoder z W_dec, and the backward products dz = dx̂ W_decᵀ, dW_dec = zᵀ dx̂ and
//! dW_enc = (x - b_dec)ᵀ dpre. Only the encoder needs the whole product: z has k non-zeros
//! per row (32 of 4096 by default), so the other four touch n·k rows of d values, not n·K
//! (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", train their TopK SAEs
//! with such a sparse decoder kernel for this reason). Here the encoder is one dense product
//! (the packed GEMM where it runs, else flex's) and everything after it runs on the host
//! over the kept entries only:
//!
//! - x̂_b = b_dec + Σ_{j kept in b} z_bj W_dec[j]; r = x̂ - x; MSE = mean_b |r_b|²; dx̂ = 2r/n.
//! - AuxK (Gao et al. 2024, §A.2): ê_b = Σ_{j in aux_b} zaux_bj W_dec[j], where aux_b are the
//!   `aux_k` largest pre-activations of b among dead latents (ReLU'd);
//!   aux = c · mean_b |ê_b - (x_b - x̂_b)|², (x - x̂) without gradient; dê = 2c(ê + r)/n.
//! - dpre_bj = dx̂_b · W_dec[j] at kept entries, dê_b · W_dec[j] at aux entries (the ReLU
//!   passes them, as every stored entry is positive; everything else has no gradient).
//! - dW_dec[j] = Σ_b z_bj dx̂_b + Σ_b zaux_bj dê_b; dW_enc[:, j] = Σ_b dpre_bj (x_b - b_dec);
//!   db_enc = Σ_b dpre_b; db_dec = Σ_b dx̂_b - W_enc Σ_b dpre_b (the centring's share).
//!
//! The random baseline (a TopK SAE whose decoder stays at its initialisation) takes the same
//! step without dW_dec; the aligned kind adds its pair term's gradient at the kept entries
//! ([`align_term`]).
//!
//! These are the gradients autodiff computes for `losses::sae_loss` (ties at the k-th value
//! kept, as `keep_top_k` does), in another summation order; `tests/train_sparse.rs` runs
//! both paths side by side (`scripts/sae_reference.py bench --kinds topk-sparse` is the same
//! sparse decoder in PyTorch). Every value is summed in an order fixed by the batch alone
//! (rows, then latents, ascending), whatever the thread count, so runs and resumes repeat
//! bit for bit.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::tensor::{Device, Tensor, TensorData};

use super::dict::TrainConfig;
use super::host::{HostSae, avx2_dispatch, dot, product, sae_grads};
use super::losses::mark_dead;
use crate::base::par::{par_map, par_rows};
use crate::base::select::kth_largest;
use crate::dict::{DictConfig, DictKind, Sae};
use crate::error::{Error, Result};

/// The environment variable that turns the hand-written steps off (`MONOSCOPE_TRAIN=dense`):
/// TopK, split and ReLU dictionaries then train through autodiff like every other kind, for
/// A/B measurements.
pub const TRAIN_ENV: &str = "MONOSCOPE_TRAIN";

/// Whether a `kind` dictionary trains with hand-written gradients on `device` (an autodiff
/// device): the TopK, random (TopK with a frozen decoder), aligned (TopK with a pair term)
/// and split (two TopK SAEs) kinds with [`topk_step`] and the ReLU and JumpReLU kinds with
/// [`super::relu::relu_step`], on the CPU backend,
/// unless [`TRAIN_ENV`] is `dense`. Other devices keep autodiff, which stays on the device
/// (the host round trip would cost a GPU more than the dense products).
pub fn applies(kind: DictKind, device: &Device) -> bool {
    matches!(
        kind,
        DictKind::Topk
            | DictKind::Random
            | DictKind::Aligned
            | DictKind::Split
            | DictKind::Relu
            | DictKind::Jumprelu
    ) && crate::base::host::is_cpu_backend(device)
        && std::env::var(TRAIN_ENV).map_or(true, |v| v != "dense")
}

/// What one hand-written step returns: the MSE and the auxiliary term (AuxK, or ReLU's L1;
/// neither multiplied by the step's `weight`), and every parameter's gradient of `weight` x
/// (MSE + auxiliary term), flattened, keyed by parameter.
pub struct Step {
    /// Mean squared reconstruction error.
    pub mse: f64,
    /// `aux_coef` x AuxK (`None` without dead latents), or λ_1 x L1 (ReLU).
    pub aux: Option<f64>,
    /// d(weight (mse + aux))/dθ, flattened row-major, on the plain device.
    pub grads: HashMap<ParamId, Tensor<1>>,
}

/// Rows with their kept latents: row b's entries are `idx[ptr[b]..ptr[b + 1]]` (ascending)
/// with values `val[..]`, all positive.
#[derive(Default)]
struct Sparse {
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f32>,
}

impl Sparse {
    fn from_parts(parts: Vec<Sparse>) -> Sparse {
        let mut out = Sparse {
            ptr: vec![0],
            ..Sparse::default()
        };
        for p in parts {
            let base = out.idx.len();
            out.ptr.extend(p.ptr[1..].iter().map(|e| e + base));
            out.idx.extend(p.idx);
            out.val.extend(p.val);
        }
        out
    }

    fn rows(&self) -> usize {
        self.ptr.len().saturating_sub(1)
    }

    fn row(&self, b: usize) -> (&[u32], &[f32]) {
        let r = self.ptr[b]..self.ptr[b + 1];
        (&self.idx[r.clone()], &self.val[r])
    }

    /// The transpose's layout: for each of `cols` columns, the positions of its entries in
    /// `self` (rows ascending) and their rows.
    fn columns(&self, cols: usize) -> Columns {
        let mut ptr = vec![0usize; cols + 1];
        for &j in &self.idx {
            ptr[j as usize + 1] += 1;
        }
        for j in 0..cols {
            ptr[j + 1] += ptr[j];
        }
        let mut fill = ptr.clone();
        let mut at = vec![0usize; self.idx.len()];
        let mut row = vec![0u32; self.idx.len()];
        for b in 0..self.rows() {
            for p in self.ptr[b]..self.ptr[b + 1] {
                let j = self.idx[p] as usize;
                at[fill[j]] = p;
                row[fill[j]] = b as u32;
                fill[j] += 1;
            }
        }
        Columns { ptr, at, row }
    }
}

/// A [`Sparse`] read by columns: column j's entries are positions `at[ptr[j]..ptr[j + 1]]`
/// of the row layout, in rows `row[..]`.
struct Columns {
    ptr: Vec<usize>,
    at: Vec<usize>,
    row: Vec<u32>,
}

/// The gradients of `weight` x the loss of one TopK step of `sae` on `x` ([n, d] row-major:
/// half images, half texts, or one modality for a split dictionary's SAE, whose loss is
/// half the total); advances `since` (samples since each latent fired). `device` is the
/// plain device the gradients are returned on.
pub fn topk_step(
    sae: &Sae,
    dict: &DictConfig,
    config: &TrainConfig,
    since: &mut [u64],
    x: &[f32],
    weight: f32,
    device: &Device,
) -> Result<Step> {
    let (d, features) = (dict.d, dict.features);
    let n = x.len() / d;
    let host = HostSae::read(sae)?;
    let (w_dec, b_dec) = (&host.w_dec, &host.b_dec);

    // x - b_dec and the one dense product, pre = (x - b_dec) W_enc + b_enc. [n, K]
    let xc = host.centred(x);
    let pre = product(&xc, &host.w_enc, Some(&host.b_enc), d, device)?;
    if pre.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "training diverged (non-finite pre-activations)".into(),
        ));
    }

    let all: Vec<u32> = (0..features as u32).collect();
    let z = keep_largest(&pre, features, &all, dict.k);
    let mut fired = vec![false; features];
    for &j in &z.idx {
        fired[j as usize] = true;
    }
    let dead = mark_dead(since, &fired, n as u64, config.dead_window);

    // x̂ and the residual r = x̂ - x. [n, d]
    let mut r = combine(&z, w_dec, d);
    par_rows(&mut r, d, |b, row| {
        for (i, v) in row.iter_mut().enumerate() {
            *v += b_dec[i] - x[b * d + i];
        }
    });
    let mse = r.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / n as f64;
    let scale = 2.0 * weight / n as f32;
    let dx_hat: Vec<f32> = r.iter().map(|v| v * scale).collect();

    // AuxK over the dead latents.
    let dead_cols: Vec<u32> = (0..features as u32).filter(|j| dead[*j as usize]).collect();
    let (aux, aux_z, de_hat) = if dead_cols.is_empty() || config.aux_coef == 0.0 {
        (None, Sparse::default(), Vec::new())
    } else {
        let aux_z = keep_largest(&pre, features, &dead_cols, config.aux_k);
        let mut e = combine(&aux_z, w_dec, d); // ê - (x - x̂) = ê + r
        e.iter_mut().zip(&r).for_each(|(e, r)| *e += r);
        let value = e.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / n as f64;
        let s = (2.0 * config.aux_coef * weight as f64 / n as f64) as f32;
        e.iter_mut().for_each(|v| *v *= s);
        (Some(value * config.aux_coef), aux_z, e)
    };

    // dpre at the stored entries of both sets.
    let mut dpre = rows_dot(&z, &dx_hat, w_dec, d);
    let pair = (dict.kind == DictKind::Aligned && dict.align > 0.0)
        .then(|| align_term(&z, dict.align * d as f64, weight, &mut dpre));
    let dpre_aux = if aux.is_some() {
        rows_dot(&aux_z, &de_hat, w_dec, d)
    } else {
        Vec::new()
    };

    // dW_dec and dW_encᵀ, one row per latent; db_enc. [K, d], [K, d], [K]
    let sets = [(&z, &dx_hat, &dpre), (&aux_z, &de_hat, &dpre_aux)];
    let sets: Vec<_> = sets[..if aux.is_some() { 2 } else { 1 }]
        .iter()
        .map(|(s, up, dp)| {
            let cols = s.columns(features);
            // Each entry's value and dpre in column order.
            let val: Vec<f32> = cols.at.iter().map(|&p| s.val[p]).collect();
            let dp: Vec<f32> = cols.at.iter().map(|&p| dp[p]).collect();
            (cols, val, dp, *up)
        })
        .collect();
    // The random baseline's decoder stays at its initialisation: no gradient.
    let frozen = dict.kind == DictKind::Random;
    let mut g_dec = vec![0f32; if frozen { 0 } else { features * d }];
    let mut g_enc_t = vec![0f32; features * d];
    let mut g_b_enc = vec![0f32; features];
    par_rows(&mut g_b_enc, 1, |j, g| {
        for (cols, _, dp, _) in &sets {
            g[0] += dp[cols.ptr[j]..cols.ptr[j + 1]].iter().sum::<f32>();
        }
    });
    par_rows(&mut g_dec, d, |j, g| {
        for (cols, val, _, up) in &sets {
            let r = cols.ptr[j]..cols.ptr[j + 1];
            gather(g, &cols.row[r.clone()], &val[r], up, d);
        }
    });
    par_rows(&mut g_enc_t, d, |j, g| {
        for (cols, _, dp, _) in &sets {
            let r = cols.ptr[j]..cols.ptr[j + 1];
            gather(g, &cols.row[r.clone()], &dp[r], &xc, d);
        }
    });
    let g_b_dec = host.b_dec_grad(&dx_hat, &g_b_enc);
    let g_enc = Tensor::<2>::from_data(TensorData::new(g_enc_t, [features, d]), device)
        .transpose()
        .reshape([d * features]);
    let g_dec = (!frozen).then_some(g_dec);
    let grads = sae_grads(sae, g_enc, g_b_enc, g_dec, g_b_dec, device);
    let aux = match (aux, pair) {
        (Some(a), Some(p)) => Some(a + p),
        (a, p) => a.or(p),
    };
    Ok(Step { mse, aux, grads })
}

/// The `aligned` kind's pair term (`losses::sae_loss`): rows b and h + b of `z` are a pair's
/// image and text codes; each code's largest entries (every entry equal to its maximum)
/// are dropped from both, and the term is -β d · mean_b cos(a_b, t_b) over what is left,
/// norms clamped at [`COS_NORM_MIN`]. Returns its value and adds `weight` x its gradient to
/// `dpre` (row layout; the kept entries are the ones TopK passes gradients through):
/// ∂cos/∂a_j = t_j / (|a| |t|) - cos · a_j / |a|² (the second part absent where the clamp
/// holds |a|).
fn align_term(z: &Sparse, beta_d: f64, weight: f32, dpre: &mut [f32]) -> f64 {
    let h = z.rows() / 2;
    let scale = (-beta_d * weight as f64 / h.max(1) as f64) as f32;
    let mut total = 0f64;
    for b in 0..h {
        let (rows, (ia, va), (it, vt)) = ([b, h + b], z.row(b), z.row(h + b));
        // Entries are positive, so a code's maximum over its whole row is its largest entry.
        let top = |v: &[f32]| v.iter().copied().fold(0f32, f32::max);
        let (ma, mt) = (top(va), top(vt));
        let dropped: Vec<u32> = (ia.iter().zip(va).filter(|(_, v)| **v == ma))
            .chain(it.iter().zip(vt).filter(|(_, v)| **v == mt))
            .map(|(j, _)| *j)
            .collect();
        // Each code's value at a column, 0 where it has no entry or the entry is dropped.
        let left = |idx: &[u32], val: &[f32], j: u32| -> f32 {
            if dropped.contains(&j) {
                return 0.0;
            }
            idx.binary_search(&j).map_or(0.0, |p| val[p])
        };
        let norm = |idx: &[u32], val: &[f32]| -> f32 {
            idx.iter()
                .map(|&j| left(idx, val, j))
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
        };
        let (na, nt) = (norm(ia, va), norm(it, vt));
        let dot: f32 = ia.iter().map(|&j| left(ia, va, j) * left(it, vt, j)).sum();
        let (nac, ntc) = (na.max(COS_NORM_MIN), nt.max(COS_NORM_MIN));
        let cos = dot / (nac * ntc);
        total += cos as f64;
        for (row, (own, other), n_own, n_own_c) in [
            (rows[0], ((ia, va), (it, vt)), na, nac),
            (rows[1], ((it, vt), (ia, va)), nt, ntc),
        ] {
            let ((idx, val), (o_idx, o_val)) = (own, other);
            let free = n_own >= COS_NORM_MIN;
            for (p, &j) in (z.ptr[row]..).zip(idx) {
                if dropped.contains(&j) {
                    continue;
                }
                let mut g = left(o_idx, o_val, j) / (nac * ntc);
                if free {
                    g -= cos * left(idx, val, j) / (n_own_c * n_own);
                }
                dpre[p] += scale * g;
            }
        }
    }
    -beta_d * total / h.max(1) as f64
}

/// The clamp on the norms of `align_term`'s cosine (as `losses::sae_loss`).
const COS_NORM_MIN: f32 = 1e-8;

/// For each row of `pre` ([n, cols]), the entries among `among` (ascending columns) at or
/// above the row's k-th largest value there (k clamped to 1..=among.len(), ties all kept,
/// as `keep_top_k`), ReLU'd, zeros dropped.
fn keep_largest(pre: &[f32], cols: usize, among: &[u32], k: usize) -> Sparse {
    let k = k.clamp(1, among.len().max(1));
    let rows = pre.len() / cols;
    // `among` is ascending and distinct, so at full length it is every column.
    let all = among.len() == cols;
    Sparse::from_parts(par_map(rows, |range| {
        let mut part = Sparse {
            ptr: vec![0],
            ..Sparse::default()
        };
        let (mut gathered, mut work) = (Vec::new(), Vec::new());
        for b in range {
            let row = &pre[b * cols..(b + 1) * cols];
            let values = if all {
                row
            } else {
                gathered.clear();
                gathered.extend(among.iter().map(|&j| row[j as usize]));
                &gathered[..]
            };
            let kth = kth_largest(values, k, &mut work);
            for (&v, &j) in values.iter().zip(among) {
                if v >= kth && v > 0.0 {
                    part.idx.push(j);
                    part.val.push(v);
                }
            }
            part.ptr.push(part.idx.len());
        }
        part
    }))
}

/// Σ_j s_bj w[j] for every row b. [n, d]
fn combine(s: &Sparse, w: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0f32; s.rows() * d];
    par_rows(&mut out, d, |b, row| {
        let (idx, val) = s.row(b);
        gather(row, idx, val, w, d);
    });
    out
}

/// g_b · w[j] at every stored entry (b, j), in the row layout's order.
fn rows_dot(s: &Sparse, g: &[f32], w: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0f32; s.idx.len()];
    // Rows of the output are the stored entries; each needs its row b.
    let mut row_of = vec![0usize; s.idx.len()];
    for b in 0..s.rows() {
        row_of[s.ptr[b]..s.ptr[b + 1]].fill(b);
    }
    par_rows(&mut out, 1, |p, o| {
        let (b, j) = (row_of[p], s.idx[p] as usize);
        o[0] = dot(&g[b * d..(b + 1) * d], &w[j * d..(j + 1) * d]);
    });
    out
}

avx2_dispatch!(
    /// `out += Σ_i w[i] table[rows[i]]`, `table` [.., d] row-major, `out` [d].
    fn gather => gather_any(out: &mut [f32], rows: &[u32], w: &[f32], table: &[f32], d: usize)
);

/// Columns of `out` summed at a time in [`gather`]: 64 f32 stay in eight 256-bit registers
/// while every term passes, so each table value is loaded once and `out` is not reloaded
/// and stored per term (what made a plain `y += a x` per term load-bound).
const GATHER_COLS: usize = 64;

/// Terms ahead whose table rows [`gather`] asks the cache for: rows are scattered over
/// tables of megabytes, so each block would otherwise wait for memory.
const PREFETCH_AHEAD: usize = 8;

/// Asks for the cache lines of `block` (a hint: no effect on values).
#[inline(always)]
fn prefetch(block: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in block.chunks(16) {
        // SAFETY: a prefetch reads nothing architecturally and never faults.
        #[allow(unused_unsafe)]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = block;
}

#[inline(always)]
fn gather_any(out: &mut [f32], rows: &[u32], w: &[f32], table: &[f32], d: usize) {
    let mut c = 0;
    while c < d {
        let width = GATHER_COLS.min(d - c);
        let mut acc = [0f32; GATHER_COLS];
        if width == GATHER_COLS {
            for (i, (&r, &a)) in rows.iter().zip(w).enumerate() {
                if let Some(&ahead) = rows.get(i + PREFETCH_AHEAD) {
                    prefetch(&table[ahead as usize * d + c..][..GATHER_COLS]);
                }
                let at = r as usize * d + c;
                let src: &[f32; GATHER_COLS] = table[at..at + GATHER_COLS]
                    .try_into()
                    .expect("a block of GATHER_COLS values");
                for l in 0..GATHER_COLS {
                    acc[l] += a * src[l];
                }
            }
        } else {
            for (&r, &a) in rows.iter().zip(w) {
                let at = r as usize * d + c;
                for (x, v) in acc.iter_mut().zip(&table[at..at + width]) {
                    *x += a * v;
                }
            }
        }
        for (o, x) in out[c..c + width].iter_mut().zip(acc) {
            *o += x;
        }
        c += width;
    }
}
