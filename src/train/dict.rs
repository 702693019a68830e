//! Native training of dictionaries with burn autodiff (SPEC §1); on the CPU backend the
//! TopK, random, aligned and split kinds take the same step with hand-written gradients and
//! a sparse decoder instead (`super::sparse`, 2-3x faster), and the ReLU and JumpReLU kinds
//! with hand-written gradients and fused element-wise passes (`super::relu`).
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
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use super::align::{ALIGN_PAIRS, Alignment, align_split};
pub use super::losses::TOPK_THRESHOLD_LR;
use super::losses::{Side, after_step, sae_loss};
use super::optim::{Adam, checked_loss, finite_loss};
use super::{relu, sparse};
use crate::analysis::metrics::{Evaluation, Quality, quality};
use crate::base::Modality;
use crate::base::host::{host_vec, scalar};
pub use crate::base::{Pairs, SplitMix};
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
    /// Whether steps are hand-written instead of autodiff's: [`sparse::topk_step`] or
    /// [`relu::relu_step`] (see [`sparse::applies`]).
    hand_written: bool,
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
            hand_written: sparse::applies(dict_config.kind, &device),
            dict_config,
            config,
            dict,
            adam: Adam::new(0.0),
            state,
            device,
        })
    }

    /// Trains through autodiff even where the hand-written sparse step applies (what
    /// `MONOSCOPE_TRAIN=dense` does from outside): the reference it is tested against.
    pub fn dense(mut self) -> Self {
        self.hand_written = false;
        self
    }

    /// Whether steps are hand-written ([`sparse::topk_step`], [`relu::relu_step`]).
    pub fn is_hand_written(&self) -> bool {
        self.hand_written
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
        if self.hand_written {
            return self.hand_step(data);
        }
        let (loss, aux) = match &self.dict {
            Dictionary::Sae(sae) => {
                let (idx_i, idx_t) = sample_halves(
                    &mut self.state.rng,
                    data.n,
                    batch,
                    self.dict_config.kind.paired(),
                );
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
        Ok(self.update(loss_value, aux_value, |adam, dict, lr, t| {
            adam.step(dict, &grads, lr, t)
        }))
    }

    /// [`Trainer::step`] through [`sparse::topk_step`] or [`relu::relu_step`] (by kind): the
    /// same batch draws as the autodiff
    /// path (TopK is not a paired kind; a split dictionary's SAEs each take their
    /// modality's rows, and their mean loss halves each one's gradients).
    fn hand_step(&mut self, data: &Pairs) -> Result<StepStats> {
        let (batch, d) = (self.config.batch, data.d);
        let (idx_i, idx_t) = sample_halves(
            &mut self.state.rng,
            data.n,
            batch,
            self.dict_config.kind.paired(),
        );
        let gather = |src: &[f32], idx: &[usize], x: &mut Vec<f32>| {
            for &i in idx {
                x.extend_from_slice(&src[i * d..(i + 1) * d]);
            }
        };
        let device = self.device.clone().inner();
        let features = self.dict_config.features;
        let mut sides = Vec::new();
        match &self.dict {
            Dictionary::Sae(sae) => {
                let mut x = Vec::with_capacity(batch * d);
                gather(&data.images, &idx_i, &mut x);
                gather(&data.texts, &idx_t, &mut x);
                sides.push((sae, x, 0..features, 1.0));
            }
            Dictionary::Split(split) => {
                for (sae, src, idx, at) in [
                    (&split.image, &data.images, &idx_i, 0),
                    (&split.text, &data.texts, &idx_t, features),
                ] {
                    let mut x = Vec::with_capacity(idx.len() * d);
                    gather(src, idx, &mut x);
                    sides.push((sae, x, at..at + features, 0.5));
                }
            }
            Dictionary::Ncl(_) => {
                return Err(Error::Invalid("the sparse step trains SAEs only".into()));
            }
        }
        let (mut loss, mut aux) = (0.0, 0.0);
        let mut grads = std::collections::HashMap::new();
        for (sae, x, latents, weight) in sides {
            let step = if matches!(self.dict_config.kind, DictKind::Relu | DictKind::Jumprelu) {
                relu::relu_step(sae, &self.dict_config, &x, weight, &device)?
            } else {
                sparse::topk_step(
                    sae,
                    &self.dict_config,
                    &self.config,
                    &mut self.state.since_fired[latents],
                    &x,
                    weight,
                    &device,
                )?
            };
            let side_aux = step.aux.unwrap_or(0.0);
            loss += weight as f64 * (step.mse + side_aux);
            aux += weight as f64 * side_aux;
            grads.extend(step.grads);
        }
        let loss = finite_loss(loss, self.state.step)?;
        Ok(self.update(loss, aux, |adam, dict, lr, t| {
            adam.step_with(dict, &grads, lr, t)
        }))
    }

    /// Counts the step, applies `adam_step` (Adam with this step's gradients) and what
    /// follows every step, and reports.
    fn update(
        &mut self,
        loss: f64,
        aux: f64,
        adam_step: impl FnOnce(&mut Adam, Dictionary, f64, i32) -> Dictionary,
    ) -> StepStats {
        self.state.step += 1;
        let lr = self.config.learning_rate(self.dict_config.kind);
        let dict = std::mem::replace(
            &mut self.dict,
            Dictionary::Ncl(ncl::init(1, 1, 1, &self.device)),
        );
        let dict = adam_step(&mut self.adam, dict, lr, self.state.step as i32);
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
        StepStats {
            loss,
            aux,
            dead_fraction,
        }
    }

    /// The trained dictionary without autodiff.
    pub fn finish(self) -> Dictionary {
        self.dict.valid()
    }
}

/// The image and text rows of one SAE batch drawn from `n` pairs: half the batch each, the
/// texts of the same pairs for `paired` kinds (they compare a pair's two codes).
fn sample_halves(
    rng: &mut SplitMix,
    n: usize,
    batch: usize,
    paired: bool,
) -> (Vec<usize>, Vec<usize>) {
    let idx_i = sample(rng, n, batch / 2);
    let idx_t = if paired {
        idx_i.clone()
    } else {
        sample(rng, n, batch - batch / 2)
    };
    (idx_i, idx_t)
}

fn sample(rng: &mut SplitMix, n: usize, count: usize) -> Vec<usize> {
    (0..count).map(|_| rng.below(n)).collect()
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
