//! CLIP: two towers and their projections into the shared embedding space.
//!
//! Module and field names follow transformers' `CLIPModel`, so a checkpoint's tensor
//! names are the paths of this module tree (see `io::weights` for the few exceptions).

pub mod blocks;
pub mod config;
pub mod footprint;
pub mod packed;
pub mod preprocess;
pub mod text;
pub mod tokenizer;
pub mod vision;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::base::engines::split_rows;
use crate::base::host::l2_normalize;
use crate::error::{Error, Result};
use blocks::{check_cut, part_rows};

pub use blocks::{ColSplit, Cut, RowSplit, SplitPass};
pub use config::{Activation, ClipConfig, TextConfig, TextPooling, VisionConfig};
pub use footprint::Footprint;
pub use text::{TextBatch, TextTransformer};
pub use vision::{TowerOutput, VisionTransformer};

/// The whole model.
#[derive(Module, Debug)]
pub struct ClipModel {
    /// Text tower.
    pub text_model: TextTransformer,
    /// Image tower.
    pub vision_model: VisionTransformer,
    /// Image width -> shared space, no bias.
    pub visual_projection: Linear,
    /// Text width -> shared space, no bias.
    pub text_projection: Linear,
    /// Log inverse temperature, shape [1] (a 0-d scalar in checkpoints).
    pub logit_scale: Param<Tensor<1>>,
}

impl ClipConfig {
    /// Creates a model with fresh parameters. Parameters are initialised lazily, so
    /// loading a checkpoint right after costs no random initialisation.
    pub fn init(&self, device: &Device) -> ClipModel {
        let proj = |i| {
            LinearConfig::new(i, self.projection_dim)
                .with_bias(false)
                .init(device)
        };
        let scale = self.logit_scale_init_value;
        ClipModel {
            text_model: self.text.init(device),
            vision_model: self.vision.init(device),
            visual_projection: proj(self.vision.hidden_size),
            text_projection: proj(self.text.hidden_size),
            logit_scale: Param::from_tensor(Tensor::from_floats([scale as f32], device)),
        }
    }
}

impl ClipModel {
    /// Image tower + projection. `pixels`: [batch, channels, size, size].
    /// Returns (projected embeddings [batch, dim], unnormalised; tower output).
    pub fn image_features(&self, pixels: Tensor<4>, keep_states: bool) -> (Tensor<2>, TowerOutput) {
        let out = self.vision_model.forward(pixels, keep_states);
        (self.visual_projection.forward(out.pooled.clone()), out)
    }

    /// Text tower + projection. Returns (projected [batch, dim], unnormalised; tower output).
    pub fn text_features(&self, batch: &TextBatch, keep_states: bool) -> (Tensor<2>, TowerOutput) {
        let out = self.text_model.forward(batch, keep_states);
        (self.text_projection.forward(out.pooled.clone()), out)
    }

    /// L2-normalised image embeddings [batch, dim] (transformers' `image_embeds`). On the
    /// CPU the batch is split over the cores ([`split_rows`]).
    pub fn embed_images(&self, pixels: Tensor<4>) -> Tensor<2> {
        let [b, ..] = pixels.dims();
        let parts = split_rows(b, &pixels.device(), |r| {
            l2_normalize(self.image_features(pixels.clone().slice(r), false).0)
        });
        Tensor::cat(parts, 0)
    }

    /// Part `part` of `parts` of one image's pass through the image tower, cut between
    /// engines that share no memory (the page's workers: [`SplitPass`]) by token rows or
    /// output columns; `pixels`: [1, channels, size, size]. Each part projects only its own
    /// token rows' patches (the patch projection is 2-3% of ViT-B/32's tower); cut by rows it
    /// runs those rows through the layers, cut by columns it swaps them for the others'
    /// first.
    pub fn split_image(
        &self,
        pixels: Tensor<4>,
        part: usize,
        parts: usize,
        cut: Cut,
    ) -> Result<SplitPass> {
        let v = &self.vision_model;
        let tokens = v.embeddings.tokens();
        check_cut(pixels.dims()[0], tokens, 0, part, parts)?;
        let rows = part_rows(tokens, part, parts);
        let x = v
            .pre_layrnorm
            .forward(v.embeddings.forward_rows(pixels, rows)); // [1, rows, width]
        let cols = match cut {
            Cut::Rows => false,
            Cut::Cols => true,
            Cut::Auto => parts <= v.encoder.column_parts(),
        };
        Ok(if cols {
            SplitPass::Cols(v.encoder.split_cols(x, tokens, 0, part, parts)?)
        } else {
            SplitPass::Rows(v.encoder.split_part(x, tokens, 0, part, parts)?)
        })
    }

    /// The L2-normalised embedding ([1, dim]) of a finished split pass, on a part that
    /// holds the class token (cut by columns, every part): [`ClipModel::embed_images`]'s row
    /// for the image, bit for bit (the same ops on the same class-token row).
    pub fn split_embedding(&self, split: &SplitPass) -> Result<Tensor<2>> {
        let row = split.output().ok_or_else(|| {
            Error::Invalid("this part of the split pass has no finished class token".into())
        })?;
        let cls = packed::tensor(row.to_vec(), [1, row.len()]); // [1, width]
        let pooled = self.vision_model.post_layernorm.forward(cls);
        Ok(l2_normalize(self.visual_projection.forward(pooled)))
    }

    /// L2-normalised text embeddings [batch, dim] (transformers' `text_embeds`). On the CPU
    /// the batch is split over the cores ([`split_rows`]).
    pub fn embed_texts(&self, batch: &TextBatch) -> Tensor<2> {
        let [b, _] = batch.ids.dims();
        let parts = split_rows(b, &batch.ids.device(), |r| {
            l2_normalize(self.text_features(&batch.rows(r), false).0)
        });
        Tensor::cat(parts, 0)
    }
}
