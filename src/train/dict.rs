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
use crate::base::host::{host_bools, host_vec, scalar};
pub use crate::base::{Pairs, SplitMix};
use crate::dict::sae::{keep_top_k, unit_rows};
use crate::dict::{DictConfig, DictKind, Dictionary, ncl};
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
            since_fired: vec![0; dict_config.features],
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
                let idx_t = sample(&mut self.state.rng, data.n, batch - half);
                let x = Tensor::cat(
                    vec![
                        data.rows(true, &idx_i, &self.device),
                        data.rows(false, &idx_t, &self.device),
                    ],
                    0,
                );
                sae_loss(
                    sae,
                    &self.dict_config,
                    &self.config,
                    &mut self.state,
                    x,
                    &self.device,
                )?
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
            dead as f64 / self.dict_config.features as f64
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
        Dictionary::Sae(mut sae) => {
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
            Dictionary::Sae(sae)
        }
        other => other,
    }
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
fn sae_loss(
    sae: &crate::dict::Sae,
    dict: &DictConfig,
    config: &TrainConfig,
    state: &mut TrainerState,
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
                state.topk_threshold =
                    (1.0 - TOPK_THRESHOLD_LR) * state.topk_threshold + TOPK_THRESHOLD_LR * m;
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
        _ => aux_k(&z, &pre, &x, &x_hat, &w_dec, config, state, n, device)?,
    };
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
    state: &mut TrainerState,
    n: usize,
    device: &Device,
) -> Result<Option<Tensor<1>>> {
    let features = state.since_fired.len();
    // z >= 0, so a column fired iff its sum is positive: one reduction, where
    // `greater_elem(0).any_dim(0)` cost 80 ms per step on the CPU.
    let fired: Vec<bool> = host_bools(
        z.clone()
            .detach()
            .sum_dim(0)
            .greater_elem(0.0)
            .reshape([features]),
    )?;
    let dead = mark_dead(&mut state.since_fired, &fired, n as u64, config.dead_window);
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
        let x = data.rows(image, &idx, device);
        let z = dict.encode(x.clone());
        let host = host_vec::<2>;
        let zs = host(z.clone())?;
        let xs = host(x)?;
        let xh = match dict.decode(z) {
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
