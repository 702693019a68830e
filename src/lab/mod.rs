//! The one library API both edges use: a [`Lab`] owns a loaded CLIP ([`Embedder`]), the
//! optional result bundle ([`Lens`]) and the optional demo image decoder, and returns
//! typed reports for analysing inputs, heatmaps ([`heatmap`]), the probe ([`probe`]),
//! attacks ([`attack`]) and control ([`control`]). `src/web/` and the CLI only convert
//! arguments and results.
//!
//! Methods that read embeddings back are `async`, because the browser's WebGPU device can
//! only be read asynchronously; natively the CLI drives them with
//! `burn::tensor::read_sync`. The lens and decoder sit behind `Rc`s that each call clones
//! first, so a bundle can be swapped while an earlier call is still awaiting the device.

pub mod attack;
pub mod build;
pub mod compare;
pub mod control;
pub mod heatmap;
pub mod probe;

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;

use crate::base::Modality;
use crate::base::host::rows_async;
use crate::clip::{Cut, SplitPass};
use crate::error::{Error, Result};
use crate::inspect::{Lens, LensSummary};
use crate::pipeline::{Embedder, refuse_blank};
use crate::world::decoder::ImageDecoder;

/// The most memory the largest activation tensor of one batched forward pass may take
/// (f32 bytes): a page's wasm heap is 4 GiB at most and also holds the model, and a
/// ViT-L/14 at 336 px takes ~21 MB per image in its attention scores (16 heads x 577^2),
/// so its batches stay at 3 images while a ViT-B/32 (0.6 MB per image) takes any batch the
/// queue sends.
pub const BATCH_ACTIVATION_BYTES: usize = 64 << 20;

/// A loaded model with its optional bundle and demo decoder.
#[derive(Debug)]
pub struct Lab {
    embedder: Embedder,
    model_hash: Option<String>,
    lens: RefCell<Option<Rc<Lens>>>,
    decoder: RefCell<Option<Rc<ImageDecoder>>>,
}

/// One analysed input: its embedding and, with a bundle, its feature activations.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    /// L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// Activation of every feature (with a bundle).
    pub activations: Option<Vec<f32>>,
    /// For prompts: longer than the model's context, so truncated.
    pub truncated: bool,
}

impl Lab {
    /// Wraps a loaded model; `model_hash` is the FNV-1a 64 of its weights file, when
    /// known (bundles record the hash of their model).
    pub fn new(embedder: Embedder, model_hash: Option<String>) -> Self {
        Self {
            embedder,
            model_hash,
            lens: RefCell::new(None),
            decoder: RefCell::new(None),
        }
    }

    /// The model.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// Hash of the model's weights, when known.
    pub fn model_hash(&self) -> Option<&str> {
        self.model_hash.as_deref()
    }

    /// Installs a bundle's lens (refused when it reads another embedding width); returns
    /// its summary. An earlier bundle is replaced only when the new one is valid.
    pub fn set_lens(&self, lens: Lens) -> Result<LensSummary> {
        lens.check_model(self.embedder.config.projection_dim)?;
        let summary = lens.summary(self.model_hash());
        *self.lens.borrow_mut() = Some(Rc::new(lens));
        Ok(summary)
    }

    /// Forgets the bundle.
    pub fn clear_lens(&self) {
        *self.lens.borrow_mut() = None;
    }

    /// The bundle's lens, if one is loaded.
    pub fn lens_opt(&self) -> Option<Rc<Lens>> {
        self.lens.borrow().clone()
    }

    /// The bundle's lens, or an error saying one is needed.
    pub fn lens(&self) -> Result<Rc<Lens>> {
        self.lens_opt()
            .ok_or_else(|| Error::Invalid("this needs a result bundle".into()))
    }

    /// The lens and its host decoder (the applications need an SAE bundle).
    fn lens_with_decoder(&self) -> Result<Rc<Lens>> {
        let lens = self.lens()?;
        lens.decoder()?;
        Ok(lens)
    }

    /// Installs the demo world's embedding -> image decoder.
    pub fn set_decoder(&self, decoder: ImageDecoder) -> Result<()> {
        if decoder.fc1.weight.dims()[0] != self.embedder.config.projection_dim {
            return Err(Error::Invalid(
                "the decoder was made for another embedding width".into(),
            ));
        }
        *self.decoder.borrow_mut() = Some(Rc::new(decoder));
        Ok(())
    }

    fn decoder(&self) -> Option<Rc<ImageDecoder>> {
        self.decoder.borrow().clone()
    }

    /// Preprocesses an encoded image file.
    pub fn preprocess(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        self.embedder.preprocess(bytes)
    }

    /// Embeddings of preprocessed images, one row each.
    pub async fn embed_pixels(&self, pixels: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        rows_async(self.embedder.embed_pixels(pixels)?).await
    }

    /// Embeddings of an already preprocessed batch tensor ([n, 3, size, size]).
    pub async fn embed_pixels_tensor(
        &self,
        pixels: burn::tensor::Tensor<4>,
    ) -> Result<Vec<Vec<f32>>> {
        rows_async(self.embedder.model.embed_images(pixels)).await
    }

    /// Embedding of an encoded image file.
    pub async fn embed_image(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        let pixels = self.preprocess(bytes)?;
        Ok(self.embed_pixels(&[pixels]).await?.remove(0))
    }

    /// Embeddings of encoded image files, one row each, in one forward pass.
    pub async fn embed_images(&self, images: &[Vec<u8>]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixels = images
            .iter()
            .map(|b| self.preprocess(b))
            .collect::<Result<Vec<_>>>()?;
        self.embed_pixels(&pixels).await
    }

    /// Which prompts are longer than the model's context (blank ones refused); tokenises
    /// only, so callers can warn before the work that embeds them.
    pub fn truncated_prompts(&self, texts: &[String]) -> Result<Vec<bool>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.embedder.truncated_prompts(&refs)
    }

    /// Embeddings of prompts to analyse (blank ones refused) and which were truncated.
    pub async fn embed_prompts(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, Vec<bool>)> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (batch, truncated) = self.embedder.prompt_batch(&refs)?;
        let rows = rows_async(self.embedder.model.embed_texts(&batch)).await?;
        Ok((rows, truncated))
    }

    /// Embedding of any text, blank included (the raw tower, as `embed` computes it).
    pub async fn embed_text(&self, text: &str) -> Result<Vec<f32>> {
        Ok(rows_async(self.embedder.embed_texts(&[text])?)
            .await?
            .remove(0))
    }

    /// Activations of embeddings with the loaded bundle, or `None` without one.
    pub fn activations(
        &self,
        rows: &[Vec<f32>],
        modality: Modality,
    ) -> Result<Option<Vec<Vec<f32>>>> {
        match self.lens_opt() {
            Some(lens) => Ok(Some(lens.activations(rows, modality)?)),
            None => Ok(None),
        }
    }

    /// Embedding and activations of an encoded image file.
    pub async fn analyze_image(&self, bytes: &[u8]) -> Result<InputReport> {
        only(self.analyze_images(&[bytes.to_vec()]).await?)
    }

    /// Embedding and activations of a prompt (blank prompts refused).
    pub async fn analyze_text(&self, text: &str) -> Result<InputReport> {
        only(self.analyze_texts(&[text.to_string()]).await?)
    }

    /// Embeddings and activations of several encoded image files in one forward pass (the
    /// page's queue sends what is pending, issue 12). A file that cannot be decoded fails
    /// alone, in its slot; the others are still analysed.
    pub async fn analyze_images(&self, images: &[Vec<u8>]) -> Result<Vec<Result<InputReport>>> {
        let mut pixels = Vec::with_capacity(images.len());
        let slots: Vec<Result<()>> = images
            .iter()
            .map(|bytes| self.preprocess(bytes).map(|p| pixels.push(p)))
            .collect();
        let mut rows = Vec::with_capacity(pixels.len());
        for chunk in pixels.chunks(batch_limit(self.embedder.config.vision_tokens())) {
            rows.extend(self.embed_pixels(chunk).await?);
        }
        let truncated = vec![false; rows.len()];
        self.reports(slots, rows, truncated, Modality::Image)
    }

    /// Part `part` of `parts` of an encoded image's pass through the image tower, cut by
    /// token rows or output columns between engines that share no memory (the page's
    /// workers at batch 1: [`SplitPass`]). Each part decodes the image itself.
    pub fn split_image(
        &self,
        bytes: &[u8],
        part: usize,
        parts: usize,
        cut: Cut,
    ) -> Result<SplitPass> {
        let pixels = self.embedder.pixel_batch(&[self.preprocess(bytes)?])?;
        self.embedder.model.split_image(pixels, part, parts, cut)
    }

    /// The embedding and activations of a finished split pass ([`Lab::split_image`]), on a
    /// part that holds the class token (cut by columns, every part): [`Lab::analyze_image`]'s report, bit for bit.
    pub async fn split_report(&self, split: &SplitPass) -> Result<InputReport> {
        let rows = rows_async(self.embedder.model.split_embedding(split)?).await?;
        only(self.reports(vec![Ok(())], rows, vec![false], Modality::Image)?)
    }

    /// Embeddings and activations of several prompts in one forward pass. A blank prompt
    /// fails alone, in its slot.
    pub async fn analyze_texts(&self, texts: &[String]) -> Result<Vec<Result<InputReport>>> {
        let mut valid = Vec::with_capacity(texts.len());
        let slots: Vec<Result<()>> = texts
            .iter()
            .map(|t| refuse_blank(&[t.as_str()]).map(|()| valid.push(t.clone())))
            .collect();
        let (mut rows, mut truncated) = (Vec::new(), Vec::new());
        for chunk in valid.chunks(batch_limit(self.embedder.config.text_tokens())) {
            let (r, t) = self.embed_prompts(chunk).await?;
            rows.extend(r);
            truncated.extend(t);
        }
        self.reports(slots, rows, truncated, Modality::Text)
    }

    /// Fills the slots that did not fail with the batch's rows, in order.
    fn reports(
        &self,
        slots: Vec<Result<()>>,
        rows: Vec<Vec<f32>>,
        truncated: Vec<bool>,
        modality: Modality,
    ) -> Result<Vec<Result<InputReport>>> {
        let mut acts = if rows.is_empty() {
            None
        } else {
            self.activations(&rows, modality)?.map(Vec::into_iter)
        };
        let mut done = rows.into_iter().zip(truncated);
        Ok(slots
            .into_iter()
            .map(|slot| {
                slot?;
                let (embedding, truncated) = done
                    .next()
                    .ok_or_else(|| Error::Invalid("fewer embeddings than inputs".into()))?;
                Ok(InputReport {
                    embedding,
                    activations: acts.as_mut().and_then(Iterator::next),
                    truncated,
                })
            })
            .collect())
    }
}

/// How many inputs one forward pass of [`Lab::analyze_images`] / [`Lab::analyze_texts`]
/// takes: as many as keep the largest activation tensor of a layer within
/// [`BATCH_ACTIVATION_BYTES`]. `(tokens, mlp, heads)` is a tower's shape.
fn batch_limit((tokens, mlp, heads): (usize, usize, usize)) -> usize {
    let per_input = 4 * tokens * mlp.max(heads * tokens);
    (BATCH_ACTIVATION_BYTES / per_input.max(1)).max(1)
}

/// The one report of a one-input batch.
fn only(mut reports: Vec<Result<InputReport>>) -> Result<InputReport> {
    reports
        .pop()
        .unwrap_or_else(|| Err(Error::Invalid("no result for the input".into())))
}
