//! The losses of the SAE kinds (each with its paper's equations, [`sae_loss`]) and what
//! follows every optimiser step ([`after_step`]); `super::dict::Trainer` drives them.

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use crate::base::SplitMix;
use crate::base::host::{host_bools, scalar};
use crate::dict::sae::{keep_top_k, unit_rows};
use crate::dict::{DictConfig, DictKind, Dictionary, Sae};
use crate::error::{Error, Result};

use super::dict::TrainConfig;

/// Advances each latent's samples-since-firing counter by a batch (reset when it fired);
/// returns which latents are now dead (silent for at least `window` samples).
pub(super) fn mark_dead(
    since_fired: &mut [u64],
    fired: &[bool],
    batch: u64,
    window: u64,
) -> Vec<bool> {
    since_fired
        .iter_mut()
        .zip(fired)
        .map(|(c, f)| {
            *c = if *f { 0 } else { c.saturating_add(batch) };
            *c >= window
        })
        .collect()
}

/// What follows the optimiser step: unit-norm decoder rows (SAEs, except the random
/// baseline, whose decoder must stay exactly at its initialisation), thresholds projected
/// onto >= 0 (JumpReLU, as SAELens does before each step) or set to the running BatchTopK
/// threshold.
pub(super) fn after_step(dict: Dictionary, kind: DictKind, topk_threshold: f64) -> Dictionary {
    match dict {
        Dictionary::Sae(sae) => Dictionary::Sae(after_sae_step(sae, kind, topk_threshold)),
        Dictionary::Split(mut split) => {
            split.image = after_sae_step(split.image, kind, topk_threshold);
            split.text = after_sae_step(split.text, kind, topk_threshold);
            Dictionary::Split(split)
        }
        other => other,
    }
}

fn after_sae_step(mut sae: Sae, kind: DictKind, topk_threshold: f64) -> Sae {
    if kind != DictKind::Random {
        sae.w_dec = sae.w_dec.map(|w| {
            let w = unit_rows(w.inner());
            Tensor::from_inner(w).require_grad()
        });
    }
    sae.threshold = sae.threshold.map(|t| {
        t.map(|t| {
            let t = t.inner();
            let t = match kind {
                DictKind::Jumprelu => t.clamp_min(0.0),
                _ => t.zeros_like() + topk_threshold as f32,
            };
            Tensor::from_inner(t).require_grad()
        })
    });
    sae
}

/// The training state one SAE's loss reads and advances: the sampler (group-sparse
/// masks), its latents' dead counters and BatchTopK's running threshold.
pub(super) struct Side<'a> {
    pub(super) rng: &'a mut SplitMix,
    pub(super) since: &'a mut [u64],
    pub(super) topk_threshold: &'a mut f64,
}

/// The loss of one SAE step on `x` [n, d] (half images, half texts), and its auxiliary
/// part; updates the dead-latent counters and BatchTopK's running threshold.
///
/// - `topk`, `random`: z = TopK_k(pre); loss = ||x - x_hat||^2 + AuxK. `random` uses the
///   decoder without gradient, so it stays at its random initialisation.
/// - `relu`: z = ReLU(pre); loss = ||x - x_hat||^2 + λ_1 Σ_k z_k ||W_dec[k]||.
/// - `batchtopk` (Bussmann et al. 2024, arXiv 2412.06410, §2): z keeps the k·n largest
///   entries of ReLU(pre) over the whole batch; loss = ||x - x_hat||^2 + AuxK. The
///   inference threshold θ follows θ <- (1 - 0.01) θ + 0.01 min{z > 0} (SAELens'
///   `update_topk_threshold`, `topk_threshold_lr` 0.01).
/// - `matryoshka` (Bussmann et al. 2025, arXiv 2503.17547, eq. 3): BatchTopK, and the
///   loss adds Σ_m ||x - (z[:, :m] W_dec[:m] + b_dec)||^2 over every prefix width m
///   but the last (SAELens' `MatryoshkaBatchTopKTrainingSAE`, whose full-width term is
///   the base MSE).
/// - `jumprelu` (Rajamanoharan et al. 2024, arXiv 2407.14435, eqs. 9-11): z = ReLU(pre)
///   H(pre - θ); loss = ||x - x_hat||^2 + λ Σ_k H(pre_k - θ_k). H has no gradient; the
///   straight-through estimators give θ the pseudo-derivatives
///   ∂z/∂θ = -(θ/ε) K((pre - θ)/ε) and ∂H/∂θ = -(1/ε) K((pre - θ)/ε), K the rectangle
///   kernel 1{|u| < 1/2}, and pass nothing to pre through H (SAELens' default,
///   `jumprelu_ste_to_input` false). Built from detached factors: θ·g - (θ·g).detach()
///   is zero in value and has gradient g.
/// - `aligned` (Dhimoïla et al. 2026, arXiv 2602.06218, the IsoEnergy code's
///   `alignment_penalty` with `cosim`): rows i and h+i are the image and text of one
///   pair; z = TopK_k(pre); the top-1 latent of each of the pair's two codes is zeroed in
///   both, and loss = ||x - x_hat||^2 + AuxK - β d · mean_i cos(z_image_i, z_text_i)
///   (β in the paper's per-element units, hence the factor d).
/// - `groupsparse` (Kaushik et al. 2026, arXiv 2601.20028, §3): paired rows; before
///   TopK a random fraction p of the latents, the same for a pair's image and text, is
///   masked out (training only); loss = ||x - x_hat||^2 + AuxK + (λ/2) · mean_i Σ_k
///   sqrt(z_image_ik^2 + z_text_ik^2) (the paper sums the two modalities' errors per pair
///   where our MSE averages them, hence λ/2; 1e-12 under the root keeps its gradient
///   finite at 0, where it is 0). The paper's modality-specific pre-biases b0, b1 are the
///   shared b_dec here: train on embeddings centred per modality (`--center`, SPEC §2),
///   which removes the same offsets.
pub(super) fn sae_loss(
    sae: &Sae,
    dict: &DictConfig,
    config: &TrainConfig,
    state: &mut Side<'_>,
    x: Tensor<2>,
    device: &Device,
) -> Result<(Tensor<1>, Option<Tensor<1>>)> {
    let [n, _] = x.dims();
    let features = dict.features;
    let pre = sae.pre_activations(x.clone()); // [n, K]
    let w_dec = if dict.kind == DictKind::Random {
        sae.w_dec.val().detach()
    } else {
        sae.w_dec.val()
    };
    let b_dec = sae.b_dec.val().unsqueeze::<2>(); // [1, d]
    let (z, l0) = match dict.kind {
        DictKind::Relu => (relu(pre.clone()), None),
        DictKind::Batchtopk | DictKind::Matryoshka => {
            let (z, min_kept) = batch_top_k(pre.clone(), dict.k)?;
            if let Some(m) = min_kept {
                *state.topk_threshold =
                    (1.0 - TOPK_THRESHOLD_LR) * *state.topk_threshold + TOPK_THRESHOLD_LR * m;
            }
            (z, None)
        }
        DictKind::Jumprelu => {
            let theta = sae
                .threshold
                .as_ref()
                .ok_or_else(|| Error::Invalid("a JumpReLU SAE without thresholds".into()))?
                .val()
                .unsqueeze::<2>()
                .expand([n, features]); // [n, K], with gradient
            let eps = dict.bandwidth;
            let centred = (pre.clone() - theta.clone()).detach(); // pre - θ, [n, K]
            let open = centred.clone().greater_elem(0.0);
            let h = Tensor::<2>::zeros([n, features], device).mask_fill(open.clone(), 1.0);
            let kernel = Tensor::<2>::zeros([n, features], device)
                .mask_fill(centred.abs().lower_elem(eps / 2.0), 1.0 / eps); // K(u/ε)/ε
            let straight = |g: Tensor<2>| {
                let s = theta.clone() * g;
                s.clone() - s.detach()
            };
            // ∂z/∂θ = -(θ/ε) K: g = -θ K/ε, without gradient.
            let g_z = -(theta.clone().detach() * kernel.clone());
            let z = pre.clone() * h.clone() + straight(g_z);
            let step = h + straight(-kernel);
            (z, Some(step.sum_dim(1).mean() * dict.l0))
        }
        DictKind::Groupsparse if dict.mask > 0.0 => {
            let masked = pair_mask(state.rng, n / 2, features, dict.mask, device);
            let masked = Tensor::cat(vec![masked.clone(), masked], 0);
            (
                keep_top_k(pre.clone().mask_fill(masked, -1e9), dict.k),
                None,
            )
        }
        _ => (keep_top_k(pre.clone(), dict.k), None),
    };
    let x_hat = z.clone().matmul(w_dec.clone()) + b_dec.clone();
    let mse = (x_hat.clone() - x.clone()).square().sum_dim(1).mean();
    let mut aux = match dict.kind {
        DictKind::Relu => {
            let norms = w_dec
                .clone()
                .square()
                .sum_dim(1)
                .sqrt()
                .reshape([1, features]);
            Some((z.clone() * norms).sum_dim(1).mean() * dict.l1)
        }
        DictKind::Jumprelu => l0,
        _ => aux_k(&z, &pre, &x, &x_hat, &w_dec, config, state.since, n, device)?,
    };
    let pair_term = match dict.kind {
        DictKind::Aligned if dict.align > 0.0 => {
            let h = n / 2;
            let (zi, zt) = (z.clone().narrow(0, 0, h), z.clone().narrow(0, h, h));
            let top1 = |c: &Tensor<2>| {
                let c = c.clone().detach();
                c.clone().equal(c.max_dim(1).expand([h, features]))
            };
            let drop = top1(&zi).bool_or(top1(&zt));
            let (zi, zt) = (zi.mask_fill(drop.clone(), 0.0), zt.mask_fill(drop, 0.0));
            let norm = |c: Tensor<2>| c.square().sum_dim(1).sqrt().clamp_min(1e-8);
            let cos = (zi.clone() * zt.clone()).sum_dim(1) / (norm(zi) * norm(zt));
            Some(-cos.mean() * (dict.align * dict.d as f64))
        }
        DictKind::Groupsparse if dict.group > 0.0 => {
            let h = n / 2;
            let (zi, zt) = (z.clone().narrow(0, 0, h), z.clone().narrow(0, h, h));
            let l21 = (zi.square() + zt.square() + 1e-12).sqrt().sum_dim(1).mean();
            Some(l21 * (dict.group / 2.0))
        }
        _ => None,
    };
    if let Some(p) = pair_term {
        aux = Some(match aux {
            Some(a) => a + p,
            None => p,
        });
    }
    if dict.kind == DictKind::Matryoshka {
        // Σ over the inner prefixes; the full width is `mse` itself.
        let mut partial = b_dec.clone().expand(x.dims());
        let mut from = 0;
        for &width in &dict.widths[..dict.widths.len() - 1] {
            partial = partial
                + z.clone()
                    .narrow(1, from, width - from)
                    .matmul(w_dec.clone().narrow(0, from, width - from));
            from = width;
            let inner = (partial.clone() - x.clone()).square().sum_dim(1).mean();
            aux = Some(match aux {
                Some(a) => a + inner,
                None => inner,
            });
        }
    }
    Ok((mse, aux))
}

/// Which latents are masked for each of `pairs` pairs: each independently with
/// probability `p`, drawn from the trainer's seeded sampler (so a resumed run draws the
/// same masks). [pairs, K], true = masked.
fn pair_mask(
    rng: &mut SplitMix,
    pairs: usize,
    features: usize,
    p: f64,
    device: &Device,
) -> Tensor<2, burn::tensor::Bool> {
    // 16 bits per draw, four draws per u64: p is resolved to 1/65536.
    let cut = (p * 65536.0).round() as u64;
    let mut bits = Vec::with_capacity(pairs * features);
    while bits.len() < pairs * features {
        let r = rng.next_u64();
        for s in 0..4 {
            bits.push(((r >> (16 * s)) & 0xFFFF) < cut);
        }
    }
    bits.truncate(pairs * features);
    Tensor::<2, burn::tensor::Bool>::from_data(TensorData::new(bits, [pairs, features]), device)
}

/// BatchTopK's learning rate of the running inference threshold (SAELens
/// `topk_threshold_lr`).
pub const TOPK_THRESHOLD_LR: f64 = 0.01;

/// The k·n largest entries of ReLU(pre) over the whole batch, zeros elsewhere (ties at
/// the threshold all kept), and the smallest kept positive value. [n, K] -> [n, K]
fn batch_top_k(pre: Tensor<2>, k: usize) -> Result<(Tensor<2>, Option<f64>)> {
    let [n, features] = pre.dims();
    let acts = relu(pre);
    let keep = (k * n).clamp(1, n * features);
    let flat = acts.clone().reshape([1, n * features]);
    let threshold = scalar(crate::dict::sae::kth_largest(&flat, keep))?;
    let z = acts
        .clone()
        .mask_fill(acts.lower_elem(threshold as f32), 0.0);
    let min_kept = if threshold > 0.0 {
        Some(threshold)
    } else {
        // Fewer than k·n positive activations: all positives are kept.
        let positive = z.clone().detach().greater_elem(0.0);
        let masked = z
            .clone()
            .detach()
            .mask_fill(positive.bool_not(), f32::INFINITY);
        let m = scalar(masked.min())?;
        m.is_finite().then_some(m)
    };
    Ok((z, min_kept))
}

/// AuxK (Gao et al. 2024, §A.2): the `aux_k` largest pre-activations among dead latents
/// reconstruct the residual x - x_hat; also advances the dead-latent counters.
#[allow(clippy::too_many_arguments)]
fn aux_k(
    z: &Tensor<2>,
    pre: &Tensor<2>,
    x: &Tensor<2>,
    x_hat: &Tensor<2>,
    w_dec: &Tensor<2>,
    config: &TrainConfig,
    since: &mut [u64],
    n: usize,
    device: &Device,
) -> Result<Option<Tensor<1>>> {
    let features = since.len();
    // z >= 0, so a column fired iff its sum is positive: one reduction, where
    // `greater_elem(0).any_dim(0)` cost 80 ms per step on the CPU.
    let fired: Vec<bool> = host_bools(
        z.clone()
            .detach()
            .sum_dim(0)
            .greater_elem(0.0)
            .reshape([features]),
    )?;
    let dead = mark_dead(since, &fired, n as u64, config.dead_window);
    let n_dead = dead.iter().filter(|d| **d).count();
    if n_dead == 0 || config.aux_coef == 0.0 {
        return Ok(None);
    }
    let alive: Vec<f32> = dead.iter().map(|d| if *d { 0.0 } else { 1.0 }).collect();
    let alive =
        Tensor::<2>::from_data(TensorData::new(alive, [1, features]), device).equal_elem(1.0);
    let dead_pre = pre.clone().mask_fill(alive, -1e9);
    let z_aux = keep_top_k(dead_pre, config.aux_k.min(n_dead));
    let residual = (x.clone() - x_hat.clone()).detach();
    let e_hat = z_aux.matmul(w_dec.clone());
    Ok(Some(
        (residual - e_hat).square().sum_dim(1).mean() * config.aux_coef,
    ))
}
