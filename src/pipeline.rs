//! The public face for embedding: model files -> CLIP + tokenizer + preprocessor, and
//! bytes / prompts -> L2-normalised embeddings.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::clip::preprocess::ImageProcessor;
use crate::clip::tokenizer::ClipTokenizer;
use crate::clip::{ClipConfig, ClipModel, Footprint, TextBatch};
use crate::error::{Error, Result};
use crate::io::weights::{Checkpoint, load_module_with_progress};

/// The files of a Hugging Face CLIP directory, as bytes.
#[derive(Debug, Clone, Copy)]
pub struct ModelFiles<'a> {
    /// `config.json`
    pub config: &'a [u8],
    /// `model.safetensors`
    pub weights: &'a [u8],
    /// `tokenizer.json`
    pub tokenizer: &'a [u8],
    /// `preprocessor_config.json`, when the directory has one.
    pub preprocessor: Option<&'a [u8]>,
}

/// A loaded CLIP ready to embed images and prompts.
#[derive(Debug)]
pub struct Embedder {
    /// Hyper-parameters.
    pub config: ClipConfig,
    /// The model.
    pub model: ClipModel,
    /// Prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// Image preprocessing.
    pub processor: ImageProcessor,
    device: Device,
}

/// Parameter counts and shapes, for `info` and the web page.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The parsed configuration.
    pub config: ClipConfig,
    /// All parameters.
    pub parameters: usize,
    /// Image tower parameters (without projection).
    pub vision_parameters: usize,
    /// Text tower parameters (without projection).
    pub text_parameters: usize,
}

impl Embedder {
    /// Loads a model from the bytes of its files onto `device`.
    pub fn from_bytes(files: ModelFiles<'_>, device: &Device) -> Result<Self> {
        Self::from_bytes_with_progress(files, device, &mut |_, _| {})
    }

    /// [`Embedder::from_bytes`], calling `on_tensor(placed, total)` as parameter tensors
    /// are placed on the device.
    pub fn from_bytes_with_progress(
        files: ModelFiles<'_>,
        device: &Device,
        on_tensor: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let config = ClipConfig::from_json(files.config)?;
        let processor = match files.preprocessor {
            Some(p) => ImageProcessor::from_hf_json(p, config.vision.image_size)?,
            None => ImageProcessor::for_size(config.vision.image_size),
        };
        let tokenizer =
            ClipTokenizer::from_bytes(files.tokenizer, config.text.max_position_embeddings)?;
        let ckpt = Checkpoint::parse(files.weights)?;
        // Nothing is allocated for a model the weights file cannot hold (every parameter
        // takes at least 2 bytes, as f16 or bf16): a hostile config.json must not make the
        // loader reserve memory for it.
        let model = config.init(device);
        let declared = Footprint::of(&model).parameters;
        if declared.saturating_mul(2) > files.weights.len() as u64 {
            return Err(Error::Weights(format!(
                "config.json declares {declared} parameters, more than the {} bytes of model.safetensors can hold",
                files.weights.len()
            )));
        }
        let model = load_module_with_progress(model, &ckpt, device, on_tensor)?;
        Ok(Self {
            config,
            model,
            tokenizer,
            processor,
            device: device.clone(),
        })
    }

    /// Loads `config.json`, `model.safetensors`, `tokenizer.json` and, if present,
    /// `preprocessor_config.json` from a directory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: not a model directory",
                dir.display()
            )));
        }
        let read = |name: &str| crate::base::fs::read_file(&dir.join(name));
        let pre_path = dir.join("preprocessor_config.json");
        let pre = if pre_path.exists() {
            Some(crate::base::fs::read_file(&pre_path)?)
        } else {
            None
        };
        let (config, weights, tokenizer) = (
            read("config.json")?,
            read("model.safetensors")?,
            read("tokenizer.json")?,
        );
        Self::from_bytes(
            ModelFiles {
                config: &config,
                weights: &weights,
                tokenizer: &tokenizer,
                preprocessor: pre.as_deref(),
            },
            device,
        )
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Sizes of the model.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            config: self.config.clone(),
            parameters: self.model.num_params(),
            vision_parameters: self.model.vision_model.num_params(),
            text_parameters: self.model.text_model.num_params(),
        }
    }

    /// Stacks preprocessed images (each `3 * size * size` floats) into [batch, 3, size, size].
    pub fn pixel_batch(&self, images: &[Vec<f32>]) -> Result<Tensor<4>> {
        let s = self.config.vision.image_size;
        let c = self.config.vision.num_channels;
        if let Some(bad) = images.iter().find(|p| p.len() != c * s * s) {
            return Err(Error::Invalid(format!(
                "pixel buffer of {} values; {} expected",
                bad.len(),
                c * s * s
            )));
        }
        let flat: Vec<f32> = images.concat();
        Ok(Tensor::from_data(
            TensorData::new(flat, [images.len(), c, s, s]),
            &self.device,
        ))
    }

    /// Preprocesses an encoded image file.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        self.processor.process(bytes)
    }

    /// L2-normalised embeddings of preprocessed images: [batch, projection_dim].
    pub fn embed_pixels(&self, images: &[Vec<f32>]) -> Result<Tensor<2>> {
        Ok(self.model.embed_images(self.pixel_batch(images)?))
    }

    /// Tokenises prompts into a batch; also says which were truncated to the context.
    pub fn text_batch(&self, texts: &[&str]) -> Result<(TextBatch, Vec<bool>)> {
        let encoded = texts
            .iter()
            .map(|t| self.tokenizer.encode(t))
            .collect::<Result<Vec<_>>>()?;
        let truncated = encoded.iter().map(|e| e.truncated).collect();
        let ids: Vec<Vec<u32>> = encoded.into_iter().map(|e| e.ids).collect();
        Ok((
            TextBatch::new(&ids, &self.config.text, &self.device)?,
            truncated,
        ))
    }

    /// [`Embedder::text_batch`] for prompts to analyse: blank ones are refused (they embed
    /// as the bare start and end tokens, which says nothing about the prompt's features).
    pub fn prompt_batch(&self, texts: &[&str]) -> Result<(TextBatch, Vec<bool>)> {
        refuse_blank(texts)?;
        self.text_batch(texts)
    }

    /// Which prompts are longer than the model's context (tokenisation only, no forward
    /// pass); blank ones are refused as in [`Embedder::prompt_batch`].
    pub fn truncated_prompts(&self, texts: &[&str]) -> Result<Vec<bool>> {
        refuse_blank(texts)?;
        texts
            .iter()
            .map(|t| self.tokenizer.encode(t).map(|e| e.truncated))
            .collect()
    }

    /// L2-normalised embeddings of prompts: [batch, projection_dim].
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Tensor<2>> {
        let (batch, _) = self.text_batch(texts)?;
        Ok(self.model.embed_texts(&batch))
    }
}

/// Blank prompts are refused: they embed as the bare start and end tokens, which says
/// nothing about a prompt's features.
pub(crate) fn refuse_blank(texts: &[&str]) -> Result<()> {
    match texts.iter().find(|t| t.trim().is_empty()) {
        Some(t) => Err(Error::Invalid(format!("empty prompt {t:?}"))),
        None => Ok(()),
    }
}
