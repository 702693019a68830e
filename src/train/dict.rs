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

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::checkpoint;
use super::optim::{Adam, checked_loss};
use crate::analysis::metrics::{Evaluation, Quality, quality};
use crate::base::host::{host_bools, host_vec, scalar};
pub use crate::base::{Pairs, SplitMix};
use crate::dict::sae::{keep_top_k, unit_rows};
use crate::dict::{DictConfig, DictKind, Dictionary, ncl};
use crate::error::{Error, Result};
use crate::io::weights::save_module;

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
            DictKind::Topk => 4e-4,
            DictKind::Relu | DictKind::Ncl => 1e-4,
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
                let pre = sae.pre_activations(x.clone());
                let z = sae.activate(pre.clone());
                let x_hat = sae.decode(z.clone());
                let mse = (x_hat.clone() - x.clone()).square().sum_dim(1).mean();
                let aux = match self.dict_config.kind {
                    DictKind::Topk => {
                        // z >= 0, so a column fired iff its sum is positive: one reduction,
                        // where `greater_elem(0).any_dim(0)` cost 80 ms per step on the CPU.
                        let fired: Vec<bool> = host_bools(
                            z.clone()
                                .detach()
                                .sum_dim(0)
                                .greater_elem(0.0)
                                .reshape([self.dict_config.features]),
                        )?;
                        let dead = mark_dead(
                            &mut self.state.since_fired,
                            &fired,
                            batch as u64,
                            self.config.dead_window,
                        );
                        let n_dead = dead.iter().filter(|d| **d).count();
                        if n_dead == 0 || self.config.aux_coef == 0.0 {
                            None
                        } else {
                            let alive: Vec<f32> =
                                dead.iter().map(|d| if *d { 0.0 } else { 1.0 }).collect();
                            let k = alive.len();
                            let alive = Tensor::<2>::from_data(
                                TensorData::new(alive, [1, k]),
                                &self.device,
                            )
                            .equal_elem(1.0);
                            let dead_pre = pre.mask_fill(alive, -1e9);
                            let z_aux = keep_top_k(dead_pre, self.config.aux_k.min(n_dead));
                            let residual = (x - x_hat).detach();
                            let e_hat = z_aux.matmul(sae.w_dec.val());
                            Some(
                                (residual - e_hat).square().sum_dim(1).mean()
                                    * self.config.aux_coef,
                            )
                        }
                    }
                    _ => {
                        let norms = sae
                            .w_dec
                            .val()
                            .square()
                            .sum_dim(1)
                            .sqrt()
                            .reshape([1, self.dict_config.features]);
                        Some((z * norms).sum_dim(1).mean() * self.dict_config.l1)
                    }
                };
                (mse, aux)
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
        self.dict = renormalise(self.adam.step(dict, &grads, lr, self.state.step as i32));
        let dead = self
            .state
            .since_fired
            .iter()
            .filter(|c| **c >= self.config.dead_window)
            .count();
        let dead_fraction = if self.dict_config.kind == DictKind::Topk {
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

/// Unit-norm decoder rows (SAE only).
fn renormalise(dict: Dictionary) -> Dictionary {
    match dict {
        Dictionary::Sae(mut sae) => {
            sae.w_dec = sae.w_dec.map(|w| {
                let w = unit_rows(w.inner());
                Tensor::from_inner(w).require_grad()
            });
            Dictionary::Sae(sae)
        }
        other => other,
    }
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
const WEIGHTS_FILE: &str = "weights.safetensors";

impl Trainer {
    /// Writes a checkpoint directory at `dir`, atomically replacing an older one.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let state = serde_json::json!({
            "state": self.state, "dict_config": self.dict_config, "train_config": self.config,
        });
        checkpoint::save(
            dir,
            vec![(WEIGHTS_FILE, save_module(&self.dict)?)],
            &self.adam,
            &state,
        )
    }

    /// Restores weights, moments and counters from [`Trainer::save_checkpoint`]'s
    /// directory (or the `.old` copy a crash mid-replacement may have left). The
    /// dictionary configuration must match.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
        let saved = checkpoint::Saved::open(dir)?;
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
