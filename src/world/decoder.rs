//! A small decoder from demo-world CLIP embeddings to images, so the page can show how an
//! edited embedding (SPEC §4.3) changes what gets generated. It plays the role of an unCLIP
//! decoder for the demo world only: an MLP from a 32-d L2-normalised embedding (image or
//! text) to a `side` x `side` RGB image in [0, 1]. Trained natively on generated scenes,
//! half the batch conditioned on image embeddings and half on caption embeddings, so it
//! accepts either; the forward pass is backend-agnostic and runs in the browser.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Config file name next to the weights.
pub const CONFIG_FILE: &str = "decoder.json";
/// Weights file name.
pub const WEIGHTS_FILE: &str = "decoder.safetensors";

/// Decoder hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageDecoderConfig {
    /// Embedding width.
    pub d: usize,
    /// Hidden width of both hidden layers.
    pub hidden: usize,
    /// Output side in pixels.
    pub side: usize,
}

impl ImageDecoderConfig {
    /// Refuses impossible sizes.
    pub fn validate(&self) -> Result<()> {
        if self.d == 0 || self.hidden == 0 || !(4..=64).contains(&self.side) {
            return Err(Error::Config(format!(
                "decoder: need d > 0, hidden > 0 and 4 <= side <= 64 (got {self:?})"
            )));
        }
        Ok(())
    }

    /// A fresh decoder.
    pub fn init(&self, device: &Device) -> ImageDecoder {
        ImageDecoder {
            fc1: LinearConfig::new(self.d, self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.hidden).init(device),
            out: LinearConfig::new(self.hidden, 3 * self.side * self.side).init(device),
            side: self.side,
        }
    }
}

/// The decoder.
#[derive(Module, Debug)]
pub struct ImageDecoder {
    /// Input layer.
    pub fc1: Linear,
    /// Hidden layer.
    pub fc2: Linear,
    /// Output layer (RGB planes).
    pub out: Linear,
    #[module(skip)]
    side: usize,
}

impl ImageDecoder {
    /// Images in [0, 1]. [n, d] -> [n, 3, side, side]
    pub fn forward(&self, x: Tensor<2>) -> Tensor<4> {
        let [n, _] = x.dims();
        let h = gelu(self.fc2.forward(gelu(self.fc1.forward(x))));
        sigmoid(self.out.forward(h)).reshape([n, 3, self.side, self.side])
    }

    /// Output side.
    pub fn side(&self) -> usize {
        self.side
    }
}

/// Loads a decoder from its config and weights bytes (strict: no missing or extra tensor).
pub fn from_bytes(config: &[u8], weights: &[u8], device: &Device) -> Result<ImageDecoder> {
    let config: ImageDecoderConfig =
        serde_json::from_slice(config).map_err(|e| Error::Config(format!("{CONFIG_FILE}: {e}")))?;
    config.validate()?;
    let ckpt = crate::io::weights::Checkpoint::parse(weights)?;
    crate::io::weights::load_module(config.init(device), &ckpt, device)
}

/// Planar RGB in [0, 1] ([3, side, side] flattened) to RGBA bytes.
pub fn planar_to_rgba(planes: &[f32], side: usize) -> Vec<u8> {
    let px = side * side;
    (0..px)
        .flat_map(|i| {
            let c = |ch: usize| (planes[ch * px + i].clamp(0.0, 1.0) * 255.0).round() as u8;
            [c(0), c(1), c(2), 255]
        })
        .collect()
}

/// Area-averages an RGB image to `side` x `side` planar floats in [0, 1] (the decoder's
/// training target).
pub fn target_planes(img: &image::RgbImage, side: usize) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * side * side];
    let mut count = vec![0f32; side * side];
    for (x, y, p) in img.enumerate_pixels() {
        let (tx, ty) = (x as usize * side / w, y as usize * side / h);
        count[ty * side + tx] += 1.0;
        for c in 0..3 {
            out[(c * side + ty) * side + tx] += p[c] as f32 / 255.0;
        }
    }
    for c in 0..3 {
        for i in 0..side * side {
            out[c * side * side + i] /= count[i].max(1.0);
        }
    }
    out
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::Path;

    use burn::module::Module;
    use burn::tensor::{Device, Tensor, TensorData};
    use serde::{Deserialize, Serialize};

    use super::{ImageDecoder, ImageDecoderConfig, target_planes};
    use crate::base::SplitMix;
    use crate::base::host::host_rows as rows;
    use crate::error::{Error, Result};
    use crate::io::weights::save_module;
    use crate::pipeline::Embedder;
    use crate::train::{Adam, checkpoint};
    use crate::world::scene::generate;

    /// Checkpoint file of the decoder's weights.
    const CHECKPOINT_WEIGHTS: &str = "decoder.safetensors";

    /// Decoder training settings.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct DecoderTrainConfig {
        /// World seed (the CLIP's).
        pub seed: u64,
        /// Training scenes are drawn from indices 0..scenes (the CLIP's training range).
        pub scenes: u64,
        /// Steps.
        pub steps: usize,
        /// Scenes per step.
        pub batch: usize,
        /// Adam learning rate.
        pub lr: f64,
        /// Architecture.
        pub model: ImageDecoderConfig,
    }

    /// Decoder training in steps, with checkpoints: a resumed run continues
    /// byte-identically (the scene sampler's state is part of the checkpoint).
    pub struct DecoderTrainer {
        config: DecoderTrainConfig,
        device: Device,
        model: ImageDecoder,
        adam: Adam,
        rng: SplitMix,
        /// Steps done.
        pub step: usize,
    }

    impl DecoderTrainer {
        /// A fresh decoder (initialised from the seed) on `device`'s autodiff twin.
        pub fn new(config: DecoderTrainConfig, device: &Device) -> Result<Self> {
            config.model.validate()?;
            if config.batch < 2 || config.steps == 0 || config.scenes == 0 {
                return Err(Error::Invalid(
                    "decoder training needs batch >= 2, steps >= 1, scenes >= 1".into(),
                ));
            }
            let ad = device.clone().autodiff();
            ad.seed(config.seed);
            Ok(Self {
                model: config.model.init(&ad),
                adam: Adam::new(0.0),
                rng: SplitMix(config.seed ^ 0xDEC0_DE00),
                step: 0,
                device: ad,
                config,
            })
        }

        /// One step on a fresh batch of scenes; returns the loss.
        pub fn train_step(&mut self, embedder: &Embedder) -> Result<f64> {
            let config = &self.config;
            let side = config.model.side;
            let img_side = embedder.config.vision.image_size as u32;
            let scenes: Vec<_> = (0..config.batch)
                .map(|_| {
                    generate(
                        config.seed,
                        self.rng.next_u64() % config.scenes,
                        img_side,
                        1,
                    )
                })
                .collect();
            let half = config.batch / 2;
            let pixels: Vec<Vec<f32>> = scenes[..half]
                .iter()
                .map(|s| embedder.processor.pixels(&s.image))
                .collect::<Result<_>>()?;
            let captions: Vec<&str> = scenes[half..]
                .iter()
                .map(|s| s.captions[0].0.as_str())
                .collect();
            let mut x = rows(embedder.embed_pixels(&pixels)?)?;
            x.extend(rows(embedder.embed_texts(&captions)?)?);
            let d = x[0].len();
            let n = x.len();
            let ad = &self.device;
            // [2 * half, d]
            let input = Tensor::<2>::from_data(TensorData::new(x.concat(), [n, d]), ad);
            let target: Vec<f32> = scenes
                .iter()
                .flat_map(|s| target_planes(&s.image, side))
                .collect();
            // [n, 3, side, side]
            let target = Tensor::<4>::from_data(TensorData::new(target, [n, 3, side, side]), ad);
            let step = self.step + 1;
            let loss = (self.model.clone().forward(input) - target).square().mean();
            let value = crate::train::checked_loss(&loss, step)?;
            let grads = loss.backward();
            // Cosine decay to a tenth: the last steps settle the colours.
            let t = step as f64 / config.steps as f64;
            let lr = config.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
            self.model = self.adam.step(self.model.clone(), &grads, lr, step as i32);
            self.step = step;
            Ok(value)
        }

        /// The trained decoder, for inference.
        pub fn finish(&self) -> ImageDecoder {
            self.model.valid()
        }

        /// Writes a checkpoint directory (replaced as a whole).
        pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
            let state =
                serde_json::json!({ "config": self.config, "step": self.step, "rng": self.rng });
            checkpoint::save(
                dir,
                vec![(CHECKPOINT_WEIGHTS, save_module(&self.model)?)],
                &self.adam,
                &state,
            )
        }

        /// Restores a checkpoint made with the same settings (only `steps` may grow).
        pub fn load_checkpoint(&mut self, dir: &Path) -> Result<()> {
            let saved = checkpoint::Saved::open(dir)?;
            let steps = self.config.steps;
            saved.same_settings(&self.config, |c: DecoderTrainConfig| DecoderTrainConfig {
                steps,
                ..c
            })?;
            self.step = saved.field("step")?;
            self.rng = saved.field::<SplitMix>("rng")?;
            let fresh = self.config.model.init(&self.device);
            self.model = saved.module(CHECKPOINT_WEIGHTS, fresh, &self.device)?;
            saved.adam(&mut self.adam, &self.device.clone().inner())
        }
    }
}

/// Writes a decoder directory (`decoder.json`, `decoder.safetensors`).
#[cfg(not(target_arch = "wasm32"))]
pub fn save_dir(
    dir: &std::path::Path,
    config: &ImageDecoderConfig,
    dec: &ImageDecoder,
) -> Result<()> {
    use crate::base::fs::{create_dir, write_atomic, write_json};
    create_dir(dir)?;
    write_atomic(
        &dir.join(WEIGHTS_FILE),
        &crate::io::weights::save_module(dec)?,
    )?;
    write_json(&dir.join(CONFIG_FILE), config)
}

/// Loads a decoder directory onto `device`.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<ImageDecoder> {
    use crate::base::fs::read_file;
    from_bytes(
        &read_file(&dir.join(CONFIG_FILE))?,
        &read_file(&dir.join(WEIGHTS_FILE))?,
        device,
    )
}
