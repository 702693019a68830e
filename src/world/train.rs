//! Contrastive training of the demo CLIP on generated scenes (native only): the same
//! CLIP code as for hub checkpoints with a small config, symmetric InfoNCE with a
//! learnable temperature (CLIP's `logit_scale`, clamped at ln 100 as in CLIP), AdamW and
//! a cosine schedule with linear warm-up. Scenes are generated on the fly from their
//! index, so the training set needs no storage; held-out scenes use indices from
//! [`HELD_OUT_START`].

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::scene::{self, COLOURS, SHAPES, generate};
use super::vocab::{caption_words, tokenizer_json};
use crate::base::SplitMix;
use crate::base::host::l2_normalize;
use crate::clip::preprocess::ImageProcessor;
use crate::clip::tokenizer::ClipTokenizer;
use crate::clip::{Activation, ClipConfig, ClipModel, TextBatch, TextConfig, VisionConfig};
use crate::error::{Error, Result};
use crate::train::Adam;

/// Scenes with indices from here on are never used for training.
pub const HELD_OUT_START: u64 = 1 << 40;
/// CLIP's cap on the logit scale (ln 100).
const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;

/// The demo world and its training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldTrainConfig {
    /// World seed (scenes and captions).
    pub seed: u64,
    /// Image side in pixels.
    pub side: usize,
    /// Training scenes (indices 0..scenes).
    pub scenes: u64,
    /// Optimiser steps.
    pub steps: usize,
    /// Image-caption pairs per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// Weight of the image auxiliary loss: a linear head reconstructs an 8x8 thumbnail
    /// from the image embedding, so pixel-only information has a reason to stay in it.
    #[serde(default)]
    pub aux_image: f64,
    /// Weight of the text auxiliary loss: a linear head predicts the caption's bag of
    /// words from the text embedding, so wording-only information stays in it.
    #[serde(default)]
    pub aux_text: f64,
}

impl Default for WorldTrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            side: 64,
            scenes: 50_000,
            steps: 3000,
            batch: 128,
            lr: 1e-3,
            weight_decay: 0.05,
            warmup: 100,
            aux_image: 1.0,
            aux_text: 0.1,
        }
    }
}

/// Thumbnail side reconstructed by the image auxiliary head.
const THUMB: usize = 8;

/// The auxiliary heads (training only; not part of the saved CLIP).
#[derive(Module, Debug)]
pub struct AuxHeads {
    /// Image embedding -> 3 x THUMB x THUMB thumbnail.
    pub image: burn::nn::Linear,
    /// Text embedding -> bag-of-words logits.
    pub text: burn::nn::Linear,
}

/// Fresh auxiliary heads for a model shape.
pub fn aux_heads(clip: &ClipConfig, device: &Device) -> AuxHeads {
    let p = clip.projection_dim;
    AuxHeads {
        image: burn::nn::LinearConfig::new(p, 3 * THUMB * THUMB).init(device),
        text: burn::nn::LinearConfig::new(p, clip.text.vocab_size).init(device),
    }
}

/// Average-pools a normalised CHW image (`side` x `side`) to THUMB x THUMB.
fn thumbnail(pixels: &[f32], side: usize) -> Vec<f32> {
    let cell = side / THUMB;
    let mut out = vec![0f32; 3 * THUMB * THUMB];
    for c in 0..3 {
        for y in 0..side {
            for x in 0..side {
                out[(c * THUMB + y / cell) * THUMB + x / cell] +=
                    pixels[(c * side + y) * side + x] / (cell * cell) as f32;
            }
        }
    }
    out
}

impl WorldTrainConfig {
    /// Learning rate at `step` (1-based): warm-up, then cosine decay to 0.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step <= self.warmup {
            return self.lr * step as f64 / self.warmup.max(1) as f64;
        }
        let t = (step - self.warmup) as f64 / (self.steps - self.warmup).max(1) as f64;
        0.5 * self.lr * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

/// The small CLIP shape used for the demo (about 0.4M parameters at vocab ~100).
pub fn demo_clip_config(side: usize, vocab_size: usize, bos: u32, eos: u32) -> ClipConfig {
    let act = Activation::QuickGelu;
    ClipConfig {
        text: TextConfig {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 256,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            max_position_embeddings: 32,
            hidden_act: act,
            layer_norm_eps: 1e-5,
            bos_token_id: bos,
            eos_token_id: eos,
            pad_token_id: 0,
        },
        vision: VisionConfig {
            hidden_size: 64,
            intermediate_size: 256,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            image_size: side,
            patch_size: side / 8,
            num_channels: 3,
            hidden_act: act,
            layer_norm_eps: 1e-5,
        },
        projection_dim: 32,
        logit_scale_init_value: crate::clip::config::DEFAULT_LOGIT_SCALE_INIT,
    }
}

/// A demo CLIP being trained.
pub struct WorldTrainer {
    /// Settings.
    pub config: WorldTrainConfig,
    /// Model shape.
    pub clip_config: ClipConfig,
    /// The model, on an autodiff device.
    pub model: ClipModel,
    /// Auxiliary heads, on the same device.
    pub aux: AuxHeads,
    /// `tokenizer.json` of the world.
    pub tokenizer_json: serde_json::Value,
    tokenizer: ClipTokenizer,
    processor: ImageProcessor,
    adam: Adam,
    rng: SplitMix,
    /// Steps done.
    pub step: usize,
    device: Device,
}

/// Token ids of a batch of captions.
type TokenIds = Vec<Vec<u32>>;

fn scene_batch(
    config: &WorldTrainConfig,
    indices: &[u64],
    rng: &mut SplitMix,
    processor: &ImageProcessor,
    tokenizer: &ClipTokenizer,
) -> Result<(Vec<Vec<f32>>, TokenIds)> {
    let mut pixels = Vec::with_capacity(indices.len());
    let mut ids = Vec::with_capacity(indices.len());
    for &i in indices {
        let s = generate(config.seed, i, config.side as u32, 4);
        pixels.push(processor.pixels(&s.image)?);
        let (text, _) = &s.captions[rng.below(s.captions.len())];
        ids.push(tokenizer.encode(text)?.ids);
    }
    Ok((pixels, ids))
}

fn stack(pixels: &[Vec<f32>], side: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(pixels.concat(), [pixels.len(), 3, side, side]),
        device,
    )
}

impl WorldTrainer {
    /// A fresh run on `device` (a plain device; autodiff is added here).
    pub fn new(config: WorldTrainConfig, device: &Device) -> Result<Self> {
        if !config.side.is_multiple_of(8)
            || config.side < 16
            || config.batch < 2
            || config.steps == 0
        {
            return Err(Error::Invalid(
                "need side a multiple of 8 (>= 16), batch >= 2, steps >= 1".into(),
            ));
        }
        let words = caption_words(config.seed, 2000);
        let tokenizer_json = tokenizer_json(&words);
        let bytes =
            serde_json::to_vec(&tokenizer_json).map_err(|e| Error::Invalid(e.to_string()))?;
        let tokenizer = ClipTokenizer::from_bytes(&bytes, 32)?;
        let eos = tokenizer.eos();
        let clip_config = demo_clip_config(config.side, eos as usize + 1, eos - 1, eos);
        let device = device.clone().autodiff();
        device.seed(config.seed);
        let model = clip_config.init(&device);
        let aux = aux_heads(&clip_config, &device);
        Ok(Self {
            aux,
            adam: Adam::new(config.weight_decay),
            rng: SplitMix(config.seed ^ 0x5EED),
            processor: ImageProcessor::for_size(config.side),
            config,
            clip_config,
            model,
            tokenizer_json,
            tokenizer,
            step: 0,
            device,
        })
    }

    /// One optimiser step; returns the loss.
    pub fn train_step(&mut self) -> Result<f64> {
        let idx: Vec<u64> = (0..self.config.batch)
            .map(|_| self.rng.next_u64() % self.config.scenes)
            .collect();
        let (pixels, ids) = scene_batch(
            &self.config,
            &idx,
            &mut self.rng,
            &self.processor,
            &self.tokenizer,
        )?;
        let images = stack(&pixels, self.config.side, &self.device);
        let texts = TextBatch::new(&ids, &self.clip_config.text, &self.device)?;
        let (img, _) = self.model.image_features(images, false);
        let (txt, _) = self.model.text_features(&texts, false);
        let scale = self
            .model
            .logit_scale
            .val()
            .clamp_max(MAX_LOGIT_SCALE)
            .exp()
            .reshape([1, 1]);
        let (img_n, txt_n) = (l2_normalize(img), l2_normalize(txt));
        let logits = img_n.clone().matmul(txt_n.clone().transpose()) * scale; // [b, b]
        let n = self.config.batch;
        let targets = Tensor::<1, Int>::arange(0..n as i64, &self.device).reshape([n, 1]);
        let ce = |l: Tensor<2>| log_softmax(l, 1).gather(1, targets.clone()).mean().neg();
        let mut loss = (ce(logits.clone()) + ce(logits.transpose())) / 2.0;
        if self.config.aux_image > 0.0 {
            let target: Vec<f32> = pixels
                .iter()
                .flat_map(|p| thumbnail(p, self.config.side))
                .collect();
            let target = Tensor::<2>::from_data(
                TensorData::new(target, [n, 3 * THUMB * THUMB]),
                &self.device,
            );
            let mse = (self.aux.image.forward(img_n.clone()) - target)
                .square()
                .mean();
            loss = loss + mse * self.config.aux_image;
        }
        if self.config.aux_text > 0.0 {
            let v = self.clip_config.text.vocab_size;
            let mut bag = vec![0f32; n * v];
            for (row, seq) in ids.iter().enumerate() {
                // Content words only: not padding, unknown, start or end.
                for &id in &seq[1..seq.len().saturating_sub(1)] {
                    if id > 1 {
                        bag[row * v + id as usize] = 1.0;
                    }
                }
            }
            let y = Tensor::<2>::from_data(TensorData::new(bag, [n, v]), &self.device);
            let x = self.aux.text.forward(txt_n.clone());
            // Binary cross-entropy with logits, summed over the vocabulary.
            let bce = (burn::tensor::activation::softplus(x.clone(), 1.0) - x * y)
                .sum_dim(1)
                .mean();
            loss = loss + bce * self.config.aux_text;
        }
        let value = crate::train::checked_loss(&loss, self.step)?;
        let grads = loss.backward();
        self.step += 1;
        let lr = self.config.lr_at(self.step);
        let model = std::mem::replace(&mut self.model, self.clip_config.init(&self.device));
        self.model = self.adam.step(model, &grads, lr, self.step as i32);
        let aux = std::mem::replace(&mut self.aux, aux_heads(&self.clip_config, &self.device));
        self.aux = self.adam.step(aux, &grads, lr, self.step as i32);
        Ok(value)
    }

    /// The trained model without autodiff.
    pub fn model(&self) -> ClipModel {
        self.model.valid()
    }
}

/// Zero-shot and retrieval quality on held-out scenes.
#[derive(Debug, Clone, Serialize)]
pub struct WorldEval {
    /// Single-object scenes: colour accuracy with "a {colour} {shape}" prompts.
    pub colour_accuracy: f64,
    /// Same scenes: shape accuracy.
    pub shape_accuracy: f64,
    /// Scenes evaluated for colour and shape.
    pub single_object_scenes: usize,
    /// Image -> text retrieval R@1 over `pairs` held-out pairs.
    pub retrieval_r1: f64,
    /// Pairs in the retrieval test.
    pub pairs: usize,
}

/// Evaluates a (non-autodiff) model on `scenes` held-out scenes.
pub fn evaluate(
    model: &ClipModel,
    clip_config: &ClipConfig,
    tokenizer: &ClipTokenizer,
    seed: u64,
    scenes: usize,
    device: &Device,
) -> Result<WorldEval> {
    let side = clip_config.vision.image_size;
    let processor = ImageProcessor::for_size(side);
    let read = |t: Tensor<2>| -> Result<Vec<Vec<f32>>> { crate::base::host::host_rows(t) };
    // Prompts for every colour x shape.
    let combos: Vec<(usize, usize)> = (0..COLOURS.len())
        .flat_map(|c| (0..SHAPES.len()).map(move |s| (c, s)))
        .collect();
    let prompt_ids = combos
        .iter()
        .map(|&(c, s)| {
            tokenizer
                .encode(&format!("a {} {}", COLOURS[c].0, SHAPES[s]))
                .map(|e| e.ids)
        })
        .collect::<Result<Vec<_>>>()?;
    let prompts =
        read(model.embed_texts(&TextBatch::new(&prompt_ids, &clip_config.text, device)?))?;
    let (mut right_c, mut right_s, mut singles) = (0, 0, 0);
    let (mut all_img, mut all_txt) = (Vec::new(), Vec::new());
    for chunk in (0..scenes as u64).collect::<Vec<_>>().chunks(100) {
        let generated: Vec<scene::Scene> = chunk
            .iter()
            .map(|&i| generate(seed, HELD_OUT_START + i, side as u32, 1))
            .collect();
        let pixels = generated
            .iter()
            .map(|s| processor.pixels(&s.image))
            .collect::<Result<Vec<_>>>()?;
        let img = read(model.embed_images(stack(&pixels, side, device)))?;
        let ids = generated
            .iter()
            .map(|s| tokenizer.encode(&s.captions[0].0).map(|e| e.ids))
            .collect::<Result<Vec<_>>>()?;
        let txt = read(model.embed_texts(&TextBatch::new(&ids, &clip_config.text, device)?))?;
        for (i, s) in generated.iter().enumerate() {
            if s.factors.objects.len() == 1 {
                let o = &s.factors.objects[0];
                let k = argmax(&prompts, &img[i]);
                right_c += usize::from(combos[k].0 == o.colour);
                right_s += usize::from(combos[k].1 == o.shape);
                singles += 1;
            }
        }
        all_img.extend(img);
        all_txt.extend(txt);
    }
    // Image -> text retrieval among all held-out pairs.
    let hits = all_img
        .iter()
        .enumerate()
        .filter(|(i, e)| argmax(&all_txt, e) == *i)
        .count();
    let pairs = all_img.len();
    let frac = |a: usize, b: usize| a as f64 / b.max(1) as f64;
    Ok(WorldEval {
        colour_accuracy: frac(right_c, singles),
        shape_accuracy: frac(right_s, singles),
        single_object_scenes: singles,
        retrieval_r1: frac(hits, pairs),
        pairs,
    })
}

/// Auto-label vocabulary of the demo world (`labels.txt` next to the model): every
/// caption word, and every "colour shape" phrase.
pub fn label_vocabulary(seed: u64) -> String {
    let mut out: Vec<String> = caption_words(seed, 2000)
        .into_iter()
        .filter(|w| w.chars().all(char::is_alphanumeric))
        .collect();
    for (c, _) in COLOURS {
        for s in SHAPES {
            out.push(format!("{c} {s}"));
        }
    }
    out.join("\n") + "\n"
}

/// Index of the row of `rows` with the largest dot product with `q`.
fn argmax(rows: &[Vec<f32>], q: &[f32]) -> usize {
    let dot = |a: &[f32]| a.iter().zip(q).map(|(x, y)| x * y).sum::<f32>();
    (0..rows.len())
        .max_by(|&a, &b| dot(&rows[a]).total_cmp(&dot(&rows[b])))
        .unwrap_or(0)
}

#[cfg(not(target_arch = "wasm32"))]
mod files {
    //! Output in the Hugging Face layout, and checkpoints (replaced atomically as a
    //! directory: written as `NAME.tmp`, old one moved aside, renamed).

    use std::path::Path;

    use super::{SplitMix, WorldTrainConfig, WorldTrainer};
    use crate::base::fs::{create_dir, to_json_pretty as json};
    use crate::error::Result;
    use crate::io::weights::save_module;
    use crate::train::checkpoint;

    /// Checkpoint files of the model and of the auxiliary heads.
    const WEIGHTS_FILE: &str = "weights.safetensors";
    const AUX_FILE: &str = "aux.safetensors";

    impl WorldTrainer {
        /// Writes `config.json`, `model.safetensors`, `tokenizer.json` (and the world's
        /// settings in `world.json`): a directory any HF CLIP loader reads.
        pub fn save_hf(&self, dir: &Path) -> Result<()> {
            create_dir(dir)?;
            crate::base::fs::write_atomic(
                &dir.join("model.safetensors"),
                &save_module(&self.model())?,
            )?;
            crate::base::fs::write_atomic(
                &dir.join("config.json"),
                &json(&self.clip_config.to_hf_json())?,
            )?;
            crate::base::fs::write_atomic(
                &dir.join("tokenizer.json"),
                &json(&self.tokenizer_json)?,
            )?;
            crate::base::fs::write_atomic(
                &dir.join("labels.txt"),
                super::label_vocabulary(self.config.seed).as_bytes(),
            )?;
            crate::base::fs::write_atomic(
                &dir.join("world.json"),
                &json(&serde_json::json!({
                    "world": self.config, "steps_done": self.step,
                }))?,
            )
        }

        /// Writes a checkpoint directory.
        pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
            let state =
                serde_json::json!({ "config": self.config, "step": self.step, "rng": self.rng });
            checkpoint::save(
                dir,
                vec![
                    (WEIGHTS_FILE, save_module(&self.model)?),
                    (AUX_FILE, save_module(&self.aux)?),
                ],
                &self.adam,
                &state,
            )
        }

        /// Restores a checkpoint made with the same world settings (only `steps` may grow).
        pub fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
            let saved = checkpoint::Saved::open(dir)?;
            let steps = self.config.steps;
            saved.same_settings(&self.config, |c: WorldTrainConfig| WorldTrainConfig {
                steps,
                ..c
            })?;
            self.step = saved.field("step")?;
            self.rng = saved.field::<SplitMix>("rng")?;
            let fresh = self.clip_config.init(&self.device);
            self.model = saved.module(WEIGHTS_FILE, fresh, &self.device)?;
            let fresh = super::aux_heads(&self.clip_config, &self.device);
            self.aux = saved.module(AUX_FILE, fresh, &self.device)?;
            saved.adam(&mut self.adam, &self.device.clone().inner())
        }
    }
}

/// Embeds held-out scenes `start..start + count` of a world with a trained demo CLIP
/// (one caption each) into a paired embeddings file whose rows carry the scene's
/// factors and caption choices (`EmbeddingsMeta::truth`); images are named
/// `scene:<seed>:<index>`, so anything holding the generator can redraw them.
pub fn extract_scenes(
    embedder: &crate::Embedder,
    seed: u64,
    start: u64,
    count: usize,
    mut progress: impl FnMut(usize),
) -> Result<crate::io::embeddings::EmbeddingsFile> {
    use crate::io::embeddings::{EmbeddingsFile, EmbeddingsMeta};
    let side = embedder.config.vision.image_size as u32;
    let d = embedder.config.projection_dim;
    let mut file = EmbeddingsFile {
        pairs: crate::base::Pairs {
            images: Vec::new(),
            texts: Vec::new(),
            n: 0,
            d,
        },
        meta: EmbeddingsMeta {
            pairs: format!("demo world, seed {seed}"),
            ..EmbeddingsMeta::default()
        },
    };
    let indices: Vec<u64> = (start..start + count as u64).collect();
    for chunk in indices.chunks(64) {
        let scenes: Vec<scene::Scene> = chunk.iter().map(|&i| generate(seed, i, side, 1)).collect();
        let pixels = scenes
            .iter()
            .map(|s| embedder.processor.pixels(&s.image))
            .collect::<Result<Vec<_>>>()?;
        let captions: Vec<&str> = scenes.iter().map(|s| s.captions[0].0.as_str()).collect();
        file.pairs
            .images
            .extend(crate::base::host::host_rows(embedder.embed_pixels(&pixels)?)?.concat());
        file.pairs
            .texts
            .extend(crate::base::host::host_rows(embedder.embed_texts(&captions)?)?.concat());
        for (s, &i) in scenes.iter().zip(chunk) {
            file.meta.lines.push(i as usize);
            file.meta.images.push(scene::name(seed, i));
            file.meta.captions.push(s.captions[0].0.clone());
            file.meta
                .truth
                .push(serde_json::json!({ "factors": s.factors, "style": s.captions[0].1 }));
        }
        file.pairs.n += chunk.len();
        progress(chunk.len());
    }
    Ok(file)
}
