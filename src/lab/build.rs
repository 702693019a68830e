//! A result bundle built on-device from the user's own image-caption pairs (issue 11): the
//! pairs are embedded with the loaded model (as `monoscope extract` does), a TopK dictionary
//! is trained on the centred embeddings with the same [`Trainer`] as `monoscope train
//! --center`, and the same analysis as `monoscope analyze --center` makes the bundle. The
//! work comes in steps (a batch of pairs, a few hundred training steps) so that the page
//! can show progress, store what is done, and cancel between steps.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::Lab;
use crate::analysis::AnalyzeConfig;
use crate::base::Pairs;
use crate::base::host::rows_async;
use crate::dict::{DEFAULT_TOPK, DictConfig, DictKind, Dictionary};
use crate::error::{Error, Result};
use crate::io::bundle::{ModelRef, to_bytes_parts};
use crate::io::dictionary::{DictFile, FORMAT, from_bytes, parse_config, parse_saelens_config};
use crate::io::embeddings::{EmbeddingsFile, EmbeddingsMeta};
use crate::jobs::analyze::{BundleInputs, DEFAULT_VOCAB, VOCAB_BATCH, make_bundle};
use crate::train::dict::{TrainConfig, Trainer, evaluate};

/// Fewest pairs a bundle is built from: below this the class thresholds (z-scores over
/// the features' MDS) and the top-20 example lists say little.
pub const MIN_PAIRS: usize = 50;

/// Rows the training metrics are measured on (as `monoscope train` logs them).
const EVAL_ROWS: usize = 4096;

/// The dictionary and training settings of a build; [`BuildSettings::for_data`] scales
/// them to the data. The same values as `monoscope train --kind topk --center --features
/// F --k K --steps S --batch B --seed SEED` reproduce the build natively.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSettings {
    /// Dictionary features.
    pub features: usize,
    /// Active features per sample.
    pub k: usize,
    /// Training steps.
    pub steps: usize,
    /// Rows per step.
    pub batch: usize,
    /// Seed of the initialisation and the batch sampler.
    pub seed: u64,
}

impl BuildSettings {
    /// Defaults for `n` pairs of width `d`: 8·d features (SPEC's expansion) but no more than
    /// about n/2 rounded up to a power of two (at least 64), since a dictionary much wider than
    /// the data it sees mostly learns dead latents; K = 32 (SPEC) or features/8 if smaller;
    /// a batch of up to 4096 rows (at least 2·n rounded to a power of two, so small sets are
    /// seen whole each step); about 100 passes over the data, between 500 and 2000 steps.
    pub fn for_data(n: usize, d: usize) -> Self {
        let features = (crate::dict::DEFAULT_EXPANSION * d)
            .min((n / 2).next_power_of_two().max(64))
            .max(8);
        let batch = (2 * n).next_power_of_two().clamp(64, 4096);
        let steps = (100 * 2 * n).div_ceil(batch).clamp(500, 2000);
        Self {
            features,
            k: DEFAULT_TOPK.min(features / 8).max(1),
            steps,
            batch,
            seed: 0,
        }
    }
}

/// How training stands after a call to [`BundleBuild::train`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainStatus {
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub steps: usize,
    /// Loss of the last step.
    pub loss: f64,
    /// Fraction of variance unexplained on up to 4096 pairs (images, texts).
    pub fvu: [f64; 2],
    /// Fraction of latents dead over the last window.
    pub dead_fraction: f64,
}

/// Embedded pairs as the page stores them between reloads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRows {
    /// Entry numbers in the user's set.
    pub ids: Vec<usize>,
    /// Image names.
    pub names: Vec<String>,
    /// Captions.
    pub captions: Vec<String>,
    /// Image embeddings, `[n, d]` row-major.
    pub image: Vec<f32>,
    /// Text embeddings, `[n, d]` row-major.
    pub text: Vec<f32>,
}

/// A build in progress: the embedded pairs, then the trainer.
pub struct BundleBuild {
    /// The pairs; `emb.meta.pairs` names where they came from (recorded in the manifest).
    emb: EmbeddingsFile,
    trainer: Option<(Trainer, Pairs)>,
    /// A dictionary the user brought (skips training), and whether to centre inputs.
    given: Option<(DictFile, Dictionary, bool)>,
    last: Option<TrainStatus>,
    device: Device,
}

impl BundleBuild {
    /// An empty build; training and analysis run on `device` (the page uses the CPU
    /// backend, whose reads are synchronous).
    pub fn new(source: &str, d: usize, device: &Device) -> Self {
        Self {
            emb: EmbeddingsFile {
                pairs: Pairs {
                    images: Vec::new(),
                    texts: Vec::new(),
                    n: 0,
                    d,
                },
                meta: EmbeddingsMeta {
                    pairs: source.to_string(),
                    ..EmbeddingsMeta::default()
                },
            },
            trainer: None,
            given: None,
            last: None,
            device: device.clone(),
        }
    }

    /// Pairs embedded so far.
    pub fn pairs(&self) -> usize {
        self.emb.pairs.n
    }

    /// Entries skipped so far, with the reason.
    pub fn skipped(&self) -> &[(usize, String)] {
        &self.emb.meta.skipped
    }

    /// Adds embedded rows (`image` and `text` are `[n, d]` row-major), e.g. restored from
    /// the page's storage after a reload. `ids` number the entries in the user's set.
    pub fn add_rows(
        &mut self,
        ids: &[usize],
        names: &[String],
        captions: &[String],
        image: &[f32],
        text: &[f32],
    ) -> Result<()> {
        let (n, d) = (ids.len(), self.emb.pairs.d);
        if names.len() != n || captions.len() != n || image.len() != n * d || text.len() != n * d {
            return Err(Error::Invalid(format!(
                "stored rows do not fit: {n} ids, {} names, {} captions, {} and {} values for width {d}",
                names.len(),
                captions.len(),
                image.len(),
                text.len()
            )));
        }
        if self.trainer.is_some() {
            return Err(Error::Invalid("training has started; no more pairs".into()));
        }
        let (p, m) = (&mut self.emb.pairs, &mut self.emb.meta);
        p.images.extend_from_slice(image);
        p.texts.extend_from_slice(text);
        p.n += n;
        m.lines.extend_from_slice(ids);
        m.images.extend_from_slice(names);
        m.captions.extend_from_slice(captions);
        Ok(())
    }

    /// The rows from `start` on, to store: (ids, names, captions, image rows, text rows).
    pub fn rows_from(&self, start: usize) -> StoredRows {
        let (p, m) = (&self.emb.pairs, &self.emb.meta);
        let start = start.min(p.n);
        StoredRows {
            ids: m.lines[start..].to_vec(),
            names: m.images[start..].to_vec(),
            captions: m.captions[start..].to_vec(),
            image: p.images[start * p.d..].to_vec(),
            text: p.texts[start * p.d..].to_vec(),
        }
    }

    /// Records an entry that could not be used.
    pub fn skip(&mut self, id: usize, reason: String) {
        self.emb.meta.skipped.push((id, reason));
    }

    /// Starts training with these settings (after the last pair).
    pub fn start_training(&mut self, settings: &BuildSettings) -> Result<()> {
        let n = self.emb.pairs.n;
        if n < MIN_PAIRS {
            return Err(Error::Invalid(format!(
                "{n} usable pairs; a bundle needs at least {MIN_PAIRS}"
            )));
        }
        // What `monoscope train --kind topk --features F --k K` makes.
        let dict = DictConfig {
            features: settings.features,
            k: settings.k,
            hidden: settings.features,
            ..DictConfig::new(DictKind::Topk, self.emb.pairs.d)
        };
        let config = TrainConfig {
            steps: settings.steps,
            batch: settings.batch,
            seed: settings.seed,
            ..TrainConfig::default()
        };
        let trainer = Trainer::new(dict, config, &self.device)?;
        self.trainer = Some((trainer, self.emb.pairs.centered()));
        Ok(())
    }

    /// Runs up to `steps` more training steps; returns where training stands.
    pub fn train(&mut self, steps: usize) -> Result<TrainStatus> {
        let (trainer, pairs) = self
            .trainer
            .as_mut()
            .ok_or_else(|| Error::Invalid("training has not started".into()))?;
        let total = trainer.config.steps;
        let mut last = None;
        for _ in 0..steps {
            if trainer.state.step >= total {
                break;
            }
            last = Some(trainer.step(pairs)?);
        }
        let step = trainer.state.step;
        let Some(s) = last else {
            return self
                .last
                .ok_or_else(|| Error::Invalid("no training step ran".into()));
        };
        let eval = evaluate(
            &trainer.dict.clone().valid(),
            pairs,
            EVAL_ROWS,
            step,
            &self.device,
        )?;
        let status = TrainStatus {
            step,
            steps: total,
            loss: s.loss,
            fvu: [eval.image.fvu, eval.text.fvu],
            dead_fraction: s.dead_fraction,
        };
        self.last = Some(status);
        Ok(status)
    }

    /// Uses an existing dictionary instead of training one: monoscope's `dict.json` or
    /// SAELens' `cfg.json` (`saelens`) with its weights. `center`: analyse centred
    /// embeddings (as `analyze --center`; right for dictionaries trained with `train
    /// --center`, wrong for SAEs trained on raw embeddings).
    pub fn use_dictionary(
        &mut self,
        config: &[u8],
        weights: &[u8],
        saelens: bool,
        center: bool,
    ) -> Result<()> {
        let file = if saelens {
            parse_saelens_config(config)?
        } else {
            parse_config(config)?
        };
        if file.config.d != self.emb.pairs.d {
            return Err(Error::Invalid(format!(
                "the dictionary expects width {}, this model embeds into {}",
                file.config.d, self.emb.pairs.d
            )));
        }
        let dict = from_bytes(&file, weights, &self.device)?;
        self.given = Some((file, dict, center));
        Ok(())
    }

    /// Whether every planned training step is done.
    pub fn trained(&self) -> bool {
        self.trainer
            .as_ref()
            .is_some_and(|(t, _)| t.state.step >= t.config.steps)
    }

    /// Analyses the trained dictionary with `lab`'s model (labels from the default
    /// vocabulary) and returns the bundle's three files (`manifest.json`, `features.json`,
    /// `dictionary.safetensors`).
    pub async fn finish(mut self, lab: &Lab, model_name: &str) -> Result<[Vec<u8>; 3]> {
        let (dict_file, dict, center) = match self.given.take() {
            Some(given) => given,
            None => self.trained_dictionary(model_name)?,
        };
        let words = crate::jobs::analyze::vocabulary_entries(DEFAULT_VOCAB);
        let vocab = vocab_embeddings(lab, &words, &self.device).await?;
        let config = AnalyzeConfig {
            center,
            ..AnalyzeConfig::default()
        };
        let embedder = lab.embedder();
        let inputs = BundleInputs {
            model: ModelRef {
                path: model_name.to_string(),
                hash_fnv1a64: lab.model_hash().map(str::to_string),
                config: Some(embedder.config.clone()),
            },
            dict_file,
            dict: &dict,
            emb: &self.emb,
            embeddings_name: self.emb.meta.pairs.clone(),
            vocab: Some((words.as_slice(), vocab)),
            config: &config,
        };
        let (manifest, features) = make_bundle(inputs, &self.device, |_| {})?;
        to_bytes_parts(&manifest, &features, &dict)
    }

    /// The trained dictionary as `monoscope train --center` writes it.
    fn trained_dictionary(&mut self, model_name: &str) -> Result<(DictFile, Dictionary, bool)> {
        if !self.trained() {
            return Err(Error::Invalid("training is not finished".into()));
        }
        let Some((trainer, _)) = self.trainer.take() else {
            unreachable!("trained() checked the trainer")
        };
        let train_config = trainer.config.clone();
        let dict_config = trainer.dict_config.clone();
        let file = DictFile {
            format: FORMAT.into(),
            config: dict_config,
            center_input: true,
            provenance: serde_json::json!({
                "embeddings": self.emb.meta.pairs, "model": model_name, "train": train_config,
                "final": self.last, "built": "on-device (monoscope page)",
            }),
            weights: None,
        };
        Ok((file, trainer.finish(), true))
    }
}

/// Text embeddings of the vocabulary on `device` (read back from the model's device, which
/// may be WebGPU).
async fn vocab_embeddings(lab: &Lab, words: &[String], device: &Device) -> Result<Tensor<2>> {
    let embedder = lab.embedder();
    let mut values = Vec::with_capacity(words.len() * embedder.config.projection_dim);
    for chunk in words.chunks(VOCAB_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for row in rows_async(embedder.embed_texts(&refs)?).await? {
            values.extend(row);
        }
    }
    let d = embedder.config.projection_dim;
    Ok(Tensor::from_data(
        TensorData::new(values, [words.len(), d]),
        device,
    ))
}

impl Lab {
    /// Embeds a batch of pairs (encoded image, caption) into `build`, as `monoscope extract`
    /// does; an unreadable image or an empty caption skips its pair with the reason.
    /// `ids` number the entries in the user's set. Returns the pairs kept.
    pub async fn build_add(
        &self,
        build: &mut BundleBuild,
        ids: &[usize],
        names: &[String],
        images: &[Vec<u8>],
        captions: &[String],
    ) -> Result<usize> {
        let (mut pixels, mut kept) = (Vec::new(), Vec::new());
        for (i, bytes) in images.iter().enumerate() {
            if captions[i].trim().is_empty() {
                build.skip(ids[i], format!("{}: empty caption", names[i]));
                continue;
            }
            match self.preprocess(bytes) {
                Ok(p) => {
                    pixels.push(p);
                    kept.push(i);
                }
                Err(e) => build.skip(ids[i], format!("{}: {e}", names[i])),
            }
        }
        if kept.is_empty() {
            return Ok(0);
        }
        let texts: Vec<&str> = kept.iter().map(|&i| captions[i].as_str()).collect();
        let image_rows = self.embed_pixels(&pixels).await?.concat();
        let text_rows = rows_async(self.embedder().embed_texts(&texts)?)
            .await?
            .concat();
        let pick = |v: &[String]| kept.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        let kept_ids: Vec<usize> = kept.iter().map(|&i| ids[i]).collect();
        build.add_rows(
            &kept_ids,
            &pick(names),
            &pick(captions),
            &image_rows,
            &text_rows,
        )?;
        Ok(kept.len())
    }
}
