//! The image tower: a ViT (transformers' `CLIPVisionTransformer`).

use std::ops::Range;

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use super::blocks::{Encoder, EncoderConfig, Pick};
use super::config::VisionConfig;
use super::packed::{self, PackCell};
use crate::base::gemm;

/// Patch projection: a stride = kernel convolution without bias, stored as the
/// checkpoint's conv weight [width, channels, patch, patch] and applied as one matmul.
#[derive(Module, Debug)]
pub struct PatchEmbedding {
    /// [width, channels, patch, patch], PyTorch's `Conv2d.weight` layout.
    pub weight: Param<Tensor<4>>,
    /// The projection packed for the packed path (`clip::packed`).
    #[module(skip)]
    packed: PackCell,
}

impl PatchEmbedding {
    /// [batch, channels, size, size] -> [batch, which.len(), width]: the patches `which`
    /// (row-major order; all of them: `0..patches`). Each output row is its patch's product
    /// alone, so a range's rows are bit for bit those of the whole (`which` not empty).
    pub fn forward_patches(&self, pixels: Tensor<4>, which: Range<usize>) -> Tensor<3> {
        let [b, c, hgt, wid] = pixels.dims();
        let [width, _, p, _] = self.weight.dims();
        let (gh, gw, n) = (hgt / p, wid / p, which.len());
        let patches = pixels
            .reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5]) // [b, gh, gw, c, p, p]
            .reshape([b, gh * gw, c * p * p])
            .slice([0..b, which, 0..c * p * p]); // [b, n, c*p*p]
        let kernel = self.weight.val().reshape([width, c * p * p]).transpose(); // [c*p*p, width]
        let rows = patches.clone().reshape([b * n, c * p * p]);
        let identity = gemm::Activation::Identity;
        match packed::product(&self.packed, &kernel, None, &rows, identity, None) {
            Some(y) => y.reshape([b, n, width]),
            None => patches.matmul(kernel.unsqueeze::<3>()),
        }
    }
}

/// Class token, patch projection and learned positions.
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    /// [width]
    pub class_embedding: Param<Tensor<1>>,
    /// Patch projection.
    pub patch_embedding: PatchEmbedding,
    /// [patches + 1, width]
    pub position_embedding: Embedding,
}

impl VisionEmbeddings {
    /// Token rows: the class token and the patches (the learned positions' rows).
    pub fn tokens(&self) -> usize {
        self.position_embedding.weight.dims()[0]
    }

    /// [batch, channels, size, size] -> [batch, patches + 1, width]
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        self.forward_rows(pixels, 0..self.tokens())
    }

    /// [batch, channels, size, size] -> [batch, rows.len(), width]: token rows `rows` alone
    /// (row 0 the class token, row t patch t - 1), bit for bit those rows of
    /// [`VisionEmbeddings::forward`]; only their patches are projected (an image's pass cut
    /// between engines, [`crate::clip::ClipModel::split_image`]). `rows` not empty.
    pub fn forward_rows(&self, pixels: Tensor<4>, rows: Range<usize>) -> Tensor<3> {
        let [b, ..] = pixels.dims();
        let w = self.class_embedding.dims()[0];
        let mut parts = Vec::with_capacity(2);
        if rows.start == 0 {
            let cls = self.class_embedding.val().reshape([1, 1, w]);
            parts.push(cls.expand([b, 1, w]));
        }
        let patches = rows.start.max(1) - 1..rows.end.max(1) - 1;
        if !patches.is_empty() {
            parts.push(self.patch_embedding.forward_patches(pixels, patches));
        }
        let positions = self.position_embedding.weight.val().slice([rows, 0..w]);
        Tensor::cat(parts, 1) + positions.unsqueeze::<3>()
    }
}

/// What a tower returns.
#[derive(Debug, Clone)]
pub struct TowerOutput {
    /// Pooled, normalised state before the projection: [batch, width].
    pub pooled: Tensor<2>,
    /// Residual stream before the first layer and after every layer (empty unless asked):
    /// each [batch, tokens, width].
    pub hidden_states: Vec<Tensor<3>>,
}

/// The ViT.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Token embeddings.
    pub embeddings: VisionEmbeddings,
    /// LayerNorm before the encoder (the checkpoint's spelling).
    pub pre_layrnorm: LayerNorm,
    /// Transformer layers.
    pub encoder: Encoder,
    /// LayerNorm on the pooled class token.
    pub post_layernorm: LayerNorm,
}

impl VisionConfig {
    /// Creates the tower with fresh (lazily initialised) parameters.
    pub fn init(&self, device: &Device) -> VisionTransformer {
        let w = self.hidden_size;
        let norm = || {
            LayerNormConfig::new(w)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        // CLIP's init: class token and positions ~ N(0, width^-0.5).
        let std = (w as f64).powf(-0.5);
        VisionTransformer {
            embeddings: VisionEmbeddings {
                class_embedding: Initializer::Normal { mean: 0.0, std }.init([w], device),
                patch_embedding: PatchEmbedding {
                    weight: Initializer::Normal {
                        mean: 0.0,
                        std: 0.02,
                    }
                    .init(
                        [w, self.num_channels, self.patch_size, self.patch_size],
                        device,
                    ),
                    packed: PackCell::default(),
                },
                position_embedding: EmbeddingConfig::new(self.num_positions(), w)
                    .with_initializer(Initializer::Normal { mean: 0.0, std })
                    .init(device),
            },
            pre_layrnorm: norm(),
            encoder: EncoderConfig {
                width: w,
                intermediate: self.intermediate_size,
                layers: self.num_hidden_layers,
                heads: self.num_attention_heads,
                act: self.hidden_act,
                eps: self.layer_norm_eps,
            }
            .init(device),
            post_layernorm: norm(),
        }
    }
}

impl VisionTransformer {
    /// `pixels`: [batch, channels, size, size], already normalised.
    pub fn forward(&self, pixels: Tensor<4>, keep_states: bool) -> TowerOutput {
        let x = self.pre_layrnorm.forward(self.embeddings.forward(pixels)); // [b, n+1, w]
        let [b, t, w] = x.dims();
        // Without the states, the last layer computes the class token's row alone.
        let (cls, hidden_states) = if keep_states {
            let (x, states) = self.encoder.forward(x, None, true);
            (x.slice([0..b, 0..1]).reshape([b, w]), states)
        } else {
            let pick = Pick::position(0, b, t, &x.device());
            (self.encoder.forward_pooled(x, None, &pick), Vec::new())
        }; // [b, w]
        TowerOutput {
            pooled: self.post_layernorm.forward(cls),
            hidden_states,
        }
    }
}
