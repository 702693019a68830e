//! Native training of dictionaries with burn autodiff (SPEC §1).
//!
//! - TopK SAE: loss = ||x - x_hat||^2 + aux_coef * AuxK, where AuxK (Gao et al. 2024,
//!   "Scaling and evaluating sparse autoencoders", §A.2) reconstructs the residual
//!   x - x_hat with the `aux_k` largest pre-activations among dead latents (latents that
//!   have not fired in the last `dead_window` samples). Defaults: aux_k 512,
//!   aux_coef 1/32, as in that paper.
//! - ReLU SAE: loss = ||x - x_hat||^2 + l1 * sum_k z_k ||W_dec[k]||.
//! - NCL: symmetric InfoNCE between h(image) and h(text) of the same pair.
//!
//! SAEs train on image and text embeddings together (half of each batch from each
//! modality); decoder rows are renormalised to unit norm after every step. The
//! optimiser is Adam (β = 0.9, 0.999, ε = 1e-8), written here so its state can be
//! checkpointed with the weights and restored exactly.

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::optim::{Adam, checked_loss};
use crate::analysis::metrics::{Evaluation, Quality, quality};
use crate::base::Modality;
use crate::base::host::{host_bools, host_vec, scalar};
pub use crate::base::{Pairs, SplitMix};
use crate::dict::sae::{keep_top_k, unit_rows};
use crate::dict::{DictConfig, DictKind, Dictionary, Sae, ncl};
use crate::error::{Error, Result};

/// AuxK latents (Gao et al. 2024).
pub const DEFAULT_AUX_K: usize = 512;
/// AuxK loss weight (Gao et al. 2024).
pub const DEFAULT_AUX_COEF: f64 = 1.0 / 32.0;
/// A latent is dead after this many samples without firing (scaled down from the
/// paper's 10M tokens to embedding-dataset sizes).
pub const DEFAULT_DEAD_WINDOW: u64 = 100_000;

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Samples per step (rows: half images, half texts for SAEs; pairs for NCL).
    pub batch: usize,
    /// Learning rate; `None` uses SPEC's default for the kind.
    pub lr: Option<f64>,
    /// Seed of the batch sampler and the initialisation.
    pub seed: u64,
    /// AuxK latents.
    pub aux_k: usize,
    /// AuxK weight.
    pub aux_coef: f64,
    /// Dead-latent window in samples.
    pub dead_window: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            batch: 4096,
            lr: None,
            seed: 0,
            aux_k: DEFAULT_AUX_K,
            aux_coef: DEFAULT_AUX_COEF,
            dead_window: DEFAULT_DEAD_WINDOW,
        }
    }
}

impl TrainConfig {
    /// The learning rate in use (SPEC §1: 4e-4 for TopK, 1e-4 for ReLU/L1 and NCL).
    pub fn learning_rate(&self, kind: DictKind) -> f64 {
        self.lr.unwrap_or(match kind {
            DictKind::Relu | DictKind::Ncl => 1e-4,
            // The new SAE kinds take TopK's rate: SAELens uses one default (3e-4) for all.
            _ => 4e-4,
        })
    }
}

/// What one step reports.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepStats {
    /// Total loss.
    pub loss: f64,
    /// Auxiliary (AuxK or L1) part.
    pub aux: f64,
    /// Fraction of latents currently dead (TopK; 0 otherwise).
    pub dead_fraction: f64,
}

/// Mutable training state, checkpointed as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps done.
    pub step: usize,
    /// Sampler state.
    pub rng: SplitMix,
    /// Samples since each latent last fired.
    pub since_fired: Vec<u64>,
    /// BatchTopK's running threshold, kept in f64 as SAELens does (`topk_threshold`);
    /// the dictionary's f32 `threshold` follows it after every step.
    #[serde(default)]
    pub topk_threshold: f64,
}

/// A dictionary being trained, with its optimiser.
pub struct Trainer {
    /// Dictionary shape.
    pub dict_config: DictConfig,
    /// Hyper-parameters.
    pub config: TrainConfig,
    /// The dictionary, on an autodiff device.
    pub dict: Dictionary,
    /// Optimiser state.
    pub adam: Adam,
    /// Counters.
    pub state: TrainerState,
    device: Device,
}

impl Trainer {
    /// A fresh trainer; `device` is a plain device (autodiff is added here).
    pub fn new(dict_config: DictConfig, config: TrainConfig, device: &Device) -> Result<Self> {
        dict_config.validate()?;
        if config.batch < 2 || config.steps == 0 {
            return Err(Error::Invalid(
                "training needs batch >= 2 and steps >= 1".into(),
            ));
        }
        let device = device.clone().autodiff();
        device.seed(config.seed);
        let dict = dict_config.init(&device);
        let state = TrainerState {
            step: 0,
            rng: SplitMix(config.seed),
            // One counter per latent; a split dictionary has two SAEs of K latents.
            since_fired: vec![
                0;
                dict_config.features
                    * if dict_config.kind == DictKind::Split {
                        2
                    } else {
                        1
                    }
            ],
            topk_threshold: 0.0,
        };
        Ok(Self {
            dict_config,
            config,
            dict,
            adam: Adam::new(0.0),
            state,
            device,
        })
    }

    /// The autodiff device in use.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// One optimiser step on a random batch.
    pub fn step(&mut self, data: &Pairs) -> Result<StepStats> {
        if data.d != self.dict_config.d {
            return Err(Error::Invalid(format!(
                "embeddings have width {}, the dictionary expects {}",
                data.d, self.dict_config.d
            )));
        }
        let batch = self.config.batch;
        let (loss, aux) = match &self.dict {
            Dictionary::Sae(sae) => {
                let half = batch / 2;
                let idx_i = sample(&mut self.state.rng, data.n, half);
                // Paired kinds compare the two codes of a pair: the texts of the same pairs.
                let idx_t = if self.dict_config.kind.paired() {
                    idx_i.clone()
                } else {
                    sample(&mut self.state.rng, data.n, batch - half)
                };
                let x = Tensor::cat(
                    vec![
                        data.rows(true, &idx_i, &self.device),
                        data.rows(false, &idx_t, &self.device),
                    ],
                    0,
                );
                let TrainerState {
                    rng,
                    since_fired,
                    topk_threshold,
                    ..
                } = &mut self.state;
                let mut side = Side {
                    rng,
                    since: since_fired,
                    topk_threshold,
                };
                sae_loss(
                    sae,
                    &self.dict_config,
                    &self.config,
                    &mut side,
                    x,
                    &self.device,
                )?
            }
            Dictionary::Split(split) => {
                // Each SAE learns its own modality (Lee et al. 2026, §4): independent
                // samples, loss = the mean of the two sides' losses.
                let half = batch / 2;
                let idx_i = sample(&mut self.state.rng, data.n, half);
                let idx_t = sample(&mut self.state.rng, data.n, batch - half);
                let features = self.dict_config.features;
                let TrainerState {
                    rng,
                    since_fired,
                    topk_threshold,
                    ..
                } = &mut self.state;
                let (since_i, since_t) = since_fired.split_at_mut(features);
                let mut losses = Vec::new();
                for (sae, image, idx, since) in [
                    (&split.image, true, &idx_i, since_i),
                    (&split.text, false, &idx_t, since_t),
                ] {
                    let mut side = Side {
                        rng,
                        since,
                        topk_threshold,
                    };
                    let x = data.rows(image, idx, &self.device);
                    losses.push(sae_loss(
                        sae,
                        &self.dict_config,
                        &self.config,
                        &mut side,
                        x,
                        &self.device,
                    )?);
                }
                let (lt, at) = losses.pop().expect("two sides");
                let (li, ai) = losses.pop().expect("two sides");
                let aux = match (ai, at) {
                    (Some(a), Some(b)) => Some((a + b) * 0.5),
                    (Some(a), None) | (None, Some(a)) => Some(a * 0.5),
                    (None, None) => None,
                };
                ((li + lt) * 0.5, aux)
            }
            Dictionary::Ncl(head) => {
                let idx = sample(&mut self.state.rng, data.n, batch);
                let a = head.forward(data.rows(true, &idx, &self.device));
                let b = head.forward(data.rows(false, &idx, &self.device));
                (ncl::info_nce(a, b, self.dict_config.temperature), None)
            }
        };
        let aux_value = match &aux {
            Some(a) => scalar(a.clone())?,
            None => 0.0,
        };
        let total = match aux {
            Some(a) => loss + a,
            None => loss,
        };
        let loss_value = checked_loss(&total, self.state.step)?;
        let grads = total.backward();
        self.state.step += 1;
        let lr = self.config.learning_rate(self.dict_config.kind);
        let dict = std::mem::replace(
            &mut self.dict,
            Dictionary::Ncl(ncl::init(1, 1, 1, &self.device)),
        );
        let dict = self.adam.step(dict, &grads, lr, self.state.step as i32);
        self.dict = after_step(dict, self.dict_config.kind, self.state.topk_threshold);
        let dead = self
            .state
            .since_fired
            .iter()
            .filter(|c| **c >= self.config.dead_window)
            .count();
        let dead_fraction = if self.dict_config.kind.uses_k() {
            dead as f64 / self.state.since_fired.len().max(1) as f64
        } else {
            0.0
        };
        Ok(StepStats {
            loss: loss_value,
            aux: aux_value,
            dead_fraction,
        })
    }

    /// The trained dictionary without autodiff.
    pub fn finish(self) -> Dictionary {
        self.dict.valid()
    }
}

/// Advances each latent's samples-since-firing counter by a batch (reset when it fired);
/// returns which latents are now dead (silent for at least `window` samples).
fn mark_dead(since_fired: &mut [u64], fired: &[bool], batch: u64, window: u64) -> Vec<bool> {
    since_fired
        .iter_mut()
        .zip(fired)
        .map(|(c, f)| {
            *c = if *f { 0 } else { c.saturating_add(batch) };
            *c >= window
        })
        .collect()
}

fn sample(rng: &mut SplitMix, n: usize, count: usize) -> Vec<usize> {
    (0..count).map(|_| rng.below(n)).collect()
}

/// What follows the optimiser step: unit-norm decoder rows (SAEs, except the random
/// baseline, whose decoder must stay exactly at its initialisation), thresholds projected
/// onto >= 0 (JumpReLU, as SAELens does before each step) or set to the running BatchTopK
/// threshold.
fn after_step(dict: Dictionary, kind: DictKind, topk_threshold: f64) -> Dictionary {
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
struct Side<'a> {
    rng: &'a mut SplitMix,
    since: &'a mut [u64],
    topk_threshold: &'a mut f64,
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
fn sae_loss(
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

/// Evaluates a dictionary (reconstruction metrics are 0 for NCL, which has no decoder).
pub fn evaluate(
    dict: &Dictionary,
    data: &Pairs,
    max_rows: usize,
    step: usize,
    device: &Device,
) -> Result<Evaluation> {
    let idx: Vec<usize> = (0..data.n.min(max_rows)).collect();
    let k = dict.features();
    let q = |image: bool| -> Result<Quality> {
        let modality = if image {
            Modality::Image
        } else {
            Modality::Text
        };
        let x = data.rows(image, &idx, device);
        let z = dict.encode(x.clone(), modality);
        let host = host_vec::<2>;
        let zs = host(z.clone())?;
        let xs = host(x)?;
        let xh = match dict.decode(z, modality) {
            Ok(r) => host(r)?,
            Err(_) => xs.clone(),
        };
        let mut qual = quality(&xs, &xh, &zs, data.d, k);
        if matches!(dict, Dictionary::Ncl(_)) {
            qual.fvu = f64::NAN;
            qual.explained_variance = f64::NAN;
            qual.cosine = f64::NAN;
        }
        Ok(qual)
    };
    Ok(Evaluation {
        step,
        image: q(true)?,
        text: q(false)?,
    })
}

/// Checkpoint file of the dictionary's weights (next to `adam.safetensors`, `state.json`).
#[cfg(not(target_arch = "wasm32"))]
const WEIGHTS_FILE: &str = "weights.safetensors";

/// Checkpoints (native: the page keeps its state elsewhere).
#[cfg(not(target_arch = "wasm32"))]
impl Trainer {
    /// Writes a checkpoint directory at `dir`, atomically replacing an older one.
    pub fn save_checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        let state = serde_json::json!({
            "state": self.state, "dict_config": self.dict_config, "train_config": self.config,
        });
        super::checkpoint::save(
            dir,
            vec![(WEIGHTS_FILE, crate::io::weights::save_module(&self.dict)?)],
            &self.adam,
            &state,
        )
    }

    /// Restores weights, moments and counters from [`Trainer::save_checkpoint`]'s
    /// directory (or the `.old` copy a crash mid-replacement may have left). The
    /// dictionary configuration must match.
    pub fn load_checkpoint(&mut self, dir: &std::path::Path) -> Result<()> {
        let saved = super::checkpoint::Saved::open(dir)?;
        let config: DictConfig = saved.field("dict_config")?;
        if config != self.dict_config {
            return Err(Error::Invalid(format!(
                "the checkpoint in {} is for another dictionary ({config:?})",
                saved.dir().display()
            )));
        }
        self.state = saved.field("state")?;
        self.dict = saved.module(
            WEIGHTS_FILE,
            self.dict_config.init(&self.device),
            &self.device,
        )?;
        saved.adam(&mut self.adam, &self.device.clone().inner())
    }
}

/// Pairs the post-hoc alignment of split dictionaries reads (Lee et al. 2026 use up to
/// 50k paired training samples).
pub const ALIGN_PAIRS: usize = 50_000;
/// Pairs encoded per pass during the alignment.
const ALIGN_CHUNK: usize = 4096;

/// How a split dictionary's latents were matched.
#[derive(Debug, Clone, Serialize)]
pub struct Alignment {
    /// Pairs read.
    pub pairs: usize,
    /// Slots whose image and text latents both fired.
    pub matched_alive: usize,
    /// Mean Pearson correlation of those slots' two latents.
    pub mean_correlation: f64,
}

/// The post-hoc alignment of a split dictionary (Lee et al. 2026, arXiv 2606.29888,
/// §4.3; their `hungarian.py`): C[i, j] is the Pearson correlation of image latent i
/// and text latent j over the first [`ALIGN_PAIRS`] pairs; latents that never fired (or
/// never vary) are excluded by a cost of 1e9; the assignment maximising Σ_i C[i, π(i)]
/// reorders the text latents so that text latent i is old latent π(i). Other kinds are
/// returned unchanged.
pub fn align_split(
    dict: Dictionary,
    pairs: &Pairs,
    device: &Device,
) -> Result<(Dictionary, Option<Alignment>)> {
    let Dictionary::Split(split) = dict else {
        return Ok((dict, None));
    };
    let n = pairs.n.min(ALIGN_PAIRS);
    if n < 2 {
        return Err(Error::Invalid(
            "aligning a split dictionary needs at least 2 pairs".into(),
        ));
    }
    let k = split.image.w_dec.dims()[0];
    let (mut sa, mut sb, mut saa, mut sbb) = (None, None, None, None);
    let mut sab: Option<Tensor<2>> = None;
    let acc = |t: &mut Option<Tensor<1>>, x: Tensor<1>| {
        *t = Some(match t.take() {
            Some(a) => a + x,
            None => x,
        })
    };
    for start in (0..n).step_by(ALIGN_CHUNK) {
        let idx: Vec<usize> = (start..(start + ALIGN_CHUNK).min(n)).collect();
        let za = split.encode(pairs.rows(true, &idx, device), Modality::Image);
        let zb = split.encode(pairs.rows(false, &idx, device), Modality::Text);
        acc(&mut sa, za.clone().sum_dim(0).reshape([k]));
        acc(&mut sb, zb.clone().sum_dim(0).reshape([k]));
        acc(&mut saa, za.clone().square().sum_dim(0).reshape([k]));
        acc(&mut sbb, zb.clone().square().sum_dim(0).reshape([k]));
        let ab = za.transpose().matmul(zb);
        sab = Some(match sab {
            Some(s) => s + ab,
            None => ab,
        });
    }
    let read = |t: Option<Tensor<1>>| host_vec(t.expect("at least one chunk"));
    let (sa, sb, saa, sbb) = (read(sa)?, read(sb)?, read(saa)?, read(sbb)?);
    let sab = host_vec(sab.expect("at least one chunk"))?;
    let nf = n as f64;
    let stats = |s: &[f32], ss: &[f32]| -> Vec<(f64, f64)> {
        s.iter()
            .zip(ss)
            .map(|(s, ss)| {
                let mean = *s as f64 / nf;
                (mean, (*ss as f64 / nf - mean * mean).max(0.0).sqrt())
            })
            .collect()
    };
    let (a, b) = (stats(&sa, &saa), stats(&sb, &sbb));
    // Below this standard deviation a latent is silent (it never fired, or fires alike on
    // every pair) and has no correlation to match on.
    const SILENT: f64 = 1e-12;
    const EXCLUDED: f64 = 1e9;
    let mut corr = vec![f64::NAN; k * k];
    let mut cost = vec![EXCLUDED; k * k];
    for i in 0..k {
        for j in 0..k {
            if a[i].1 > SILENT && b[j].1 > SILENT {
                let c = (sab[i * k + j] as f64 / nf - a[i].0 * b[j].0) / (a[i].1 * b[j].1);
                corr[i * k + j] = c;
                cost[i * k + j] = -c;
            }
        }
    }
    let perm = crate::base::assignment::min_cost_assignment(&cost, k);
    let matched: Vec<f64> = (0..k)
        .map(|i| corr[i * k + perm[i]])
        .filter(|c| c.is_finite())
        .collect();
    let alignment = Alignment {
        pairs: n,
        matched_alive: matched.len(),
        mean_correlation: if matched.is_empty() {
            f64::NAN
        } else {
            matched.iter().sum::<f64>() / matched.len() as f64
        },
    };
    Ok((
        Dictionary::Split(split.permute_text(&perm)),
        Some(alignment),
    ))
}
