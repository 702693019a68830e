//! The transformer pieces both towers share: attention, MLP, pre-norm encoder layer.
//! Field names are transformers' (`self_attn.q_proj`, `layer_norm1`, `mlp.fc1`, ...), so
//! checkpoint names map onto them without a rename table.

use std::ops::Range;

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid, softmax};
use burn::tensor::{Device, Tensor};

use super::config::Activation;
use super::packed::{self, PackCell};
use crate::base::engines::{fork_cols, fork_cols_in};
use crate::base::gemm::{self, ColumnWriter};

/// Additive mask value for forbidden attention positions. Finite (unlike -inf) so that
/// no backend can turn `-inf - -inf` into NaN; exp() of it is exactly 0 in f32.
pub const MASKED: f32 = -1e9;

/// `quick_gelu` slope, from OpenAI CLIP's `QuickGELU` (`x * sigmoid(1.702 * x)`).
const QUICK_GELU_SLOPE: f64 = 1.702;

/// Indices of an attention layer's projections in its [`PackCell`]s.
const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const OUT: usize = 3;

/// `act(linear.forward(x)) + residual` for `x`: [batch, tokens, in] -> [batch, tokens,
/// out], its output columns shared with the idle engines this thread was lent
/// ([`fork_cols`]: batch 1 on a multi-core CPU). On the packed path ([`packed::enabled`])
/// the weight comes packed from `cell` and the activation and residual are added as each
/// engine's columns are written; elsewhere each column range runs burn's `linear` and its
/// activation. A column range of the `[in, out]` weight is a strided view that flex hands
/// to gemm as it is, so each engine packs and streams only its share of the weight.
fn linear_fused(
    linear: &Linear,
    cell: &PackCell,
    x: Tensor<3>,
    act: Option<Activation>,
    residual: Option<Tensor<3>>,
) -> Tensor<3> {
    let [b, t, d_in] = x.dims();
    let x = x.reshape([b * t, d_in]); // [rows, in]
    let [_, d_out] = linear.weight.dims();
    // quick_gelu is fused into the packed product; other activations follow it.
    let (fused, after) = match act {
        None => (gemm::Activation::Identity, None),
        Some(Activation::QuickGelu) => (gemm::Activation::QuickGelu, None),
        Some(a) => (gemm::Activation::Identity, Some(a)),
    };
    let res2 = match (&residual, after) {
        (Some(r), None) => Some(r.clone().reshape([b * t, d_out])),
        _ => None,
    };
    let bias = linear.bias.as_ref().map(|b| b.val());
    let weight = linear.weight.val();
    if let Some(y) = packed::product(cell, &weight, bias.as_ref(), &x, fused, res2.as_ref()) {
        let y = y.reshape([b, t, d_out]);
        return match after {
            Some(a) => add(activate(y, a), residual),
            None => y, // the residual, if any, was added by the product
        };
    }
    let mut parts = fork_cols(d_out, |cols| {
        let y = linear_cols(linear, x.clone(), cols);
        match act {
            Some(a) => activate(y, a),
            None => y,
        }
    });
    let y = if parts.len() == 1 {
        parts.remove(0)
    } else {
        Tensor::cat(parts, 1)
    };
    let y = y.reshape([b, t, d_out]);
    add(y, residual)
}

/// `residual + y`.
fn add(y: Tensor<3>, residual: Option<Tensor<3>>) -> Tensor<3> {
    match residual {
        Some(r) => r + y,
        None => y,
    }
}

/// Output columns `cols` of `linear.forward(x)`: [rows, in] -> [rows, cols]. A column range
/// of the `[in, out]` weight is a strided view, which flex hands to gemm without a copy.
fn linear_cols(linear: &Linear, x: Tensor<2>, cols: Range<usize>) -> Tensor<2> {
    let [d_in, d_out] = linear.weight.dims();
    if cols == (0..d_out) {
        return linear.forward(x);
    }
    let w = linear.weight.val().slice([0..d_in, cols.clone()]); // [in, range]
    let bias = linear.bias.as_ref().map(|b| b.val().slice([cols])); // [range]
    burn::tensor::module::linear(x, w, bias)
}

/// Applies a feed-forward activation.
pub fn activate<const D: usize>(x: Tensor<D>, act: Activation) -> Tensor<D> {
    match act {
        Activation::QuickGelu => x.clone() * sigmoid(x * QUICK_GELU_SLOPE),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
    }
}

/// Settings shared by the layers of one encoder.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// Residual width.
    pub width: usize,
    /// MLP inner width.
    pub intermediate: usize,
    /// Number of layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP activation.
    pub act: Activation,
    /// Layer-norm epsilon.
    pub eps: f64,
}

impl EncoderConfig {
    /// Creates an encoder with fresh (lazily initialised) parameters.
    pub fn init(&self, device: &Device) -> Encoder {
        Encoder {
            layers: (0..self.layers).map(|_| self.init_layer(device)).collect(),
        }
    }

    fn init_layer(&self, device: &Device) -> EncoderLayer {
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let norm = || {
            LayerNormConfig::new(self.width)
                .with_epsilon(self.eps)
                .init(device)
        };
        EncoderLayer {
            self_attn: Attention {
                q_proj: linear(self.width, self.width),
                k_proj: linear(self.width, self.width),
                v_proj: linear(self.width, self.width),
                out_proj: linear(self.width, self.width),
                num_heads: self.heads,
                packed: Default::default(),
            },
            layer_norm1: norm(),
            mlp: Mlp {
                fc1: linear(self.width, self.intermediate),
                fc2: linear(self.intermediate, self.width),
                act: self.act,
                packed: Default::default(),
            },
            layer_norm2: norm(),
        }
    }
}

/// Multi-head self-attention (transformers' `CLIPAttention`).
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    #[module(skip)]
    num_heads: usize,
    /// q, k, v and out packed for the packed path ([`Q`], [`K`], [`V`], [`OUT`]).
    #[module(skip)]
    packed: [PackCell; 4],
}

impl Attention {
    /// `x`: [batch, tokens, width]; `mask`: additive, broadcastable to
    /// [batch, heads, tokens, tokens]. Returns [batch, tokens, width].
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        self.forward_added(x, mask, None)
    }

    /// `residual + self.forward(x, mask)`, the residual added as the output is written.
    fn forward_added(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<4>>,
        residual: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let [b, t, w] = x.dims();
        let h = self.num_heads;
        let d = w / h;
        let x = x.reshape([b * t, w]); // [rows, width]
        let scale = (d as f64).powf(-0.5);
        let packed = if packed::enabled(&x.device()) {
            let cells = [Q, K, V].map(|i| self.packed[i].get(self.proj(i)));
            match (cells, packed::rows(&x)) {
                ([Some(q), Some(k), Some(v)], Some(rows)) => Some(([q, k, v], rows)),
                _ => None,
            }
        } else {
            None
        };
        // Whole heads per range: each lent engine projects its heads' columns of q, k and v
        // and runs their attention (one fork instead of three, attention shared too). The
        // packed GEMM also needs ranges to start at its panels (16 columns): head sizes such
        // as 88 (ViT-g) are not multiples of 16, so ranges then hold an even number of heads.
        let align = match packed {
            Some(_) => lcm(d, gemm::NR),
            None => d,
        };
        let mut parts = fork_cols_in(w, align, |cols| {
            let heads = cols.start / d..cols.end / d;
            let split = |i: usize| {
                let y = match &packed {
                    Some((ws, rows)) => {
                        let out = ColumnWriter::new(b * t, cols.clone());
                        out.write(rows, &ws[i], cols.clone(), gemm::Activation::Identity, None);
                        packed::tensor(out.into_vec(), [b * t, cols.len()])
                    }
                    None => linear_cols(self.proj(i), x.clone(), cols.clone()),
                };
                y.reshape([b, t, heads.len(), d]).swap_dims(1, 2) // [b, heads, t, d]
            };
            let (q, k, v) = (split(Q), split(K), split(V));
            let mut scores = q.matmul(k.swap_dims(2, 3)) * scale; // [b, heads, t, t]
            if let Some(mask) = &mask {
                let [mb, mh, mt, ms] = mask.dims();
                scores = scores
                    + match mh {
                        1 => mask.clone(),
                        _ => mask.clone().slice([0..mb, heads.clone(), 0..mt, 0..ms]),
                    };
            }
            let ctx = softmax(scores, 3).matmul(v); // [b, heads, t, d]
            ctx.swap_dims(1, 2).reshape([b * t, cols.len()]) // [rows, range]
        });
        let ctx = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Tensor::cat(parts, 1)
        };
        linear_fused(
            &self.out_proj,
            &self.packed[OUT],
            ctx.reshape([b, t, w]),
            None,
            residual,
        )
    }

    fn proj(&self, i: usize) -> &Linear {
        [&self.q_proj, &self.k_proj, &self.v_proj, &self.out_proj][i]
    }
}

/// Least common multiple.
fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b) * b
}

/// Two-layer feed-forward block (transformers' `CLIPMLP`).
#[derive(Module, Debug)]
pub struct Mlp {
    /// Expansion.
    pub fc1: Linear,
    /// Contraction.
    pub fc2: Linear,
    #[module(skip)]
    act: Activation,
    /// fc1 and fc2 packed for the packed path.
    #[module(skip)]
    packed: [PackCell; 2],
}

impl Mlp {
    /// [batch, tokens, width] -> [batch, tokens, width]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_added(x, None)
    }

    /// `residual + self.forward(x)`, the residual added as the output is written.
    fn forward_added(&self, x: Tensor<3>, residual: Option<Tensor<3>>) -> Tensor<3> {
        let hidden = linear_fused(&self.fc1, &self.packed[0], x, Some(self.act), None);
        linear_fused(&self.fc2, &self.packed[1], hidden, None, residual)
    }
}

/// Pre-norm residual block (transformers' `CLIPEncoderLayer`).
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Attention.
    pub self_attn: Attention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// Feed-forward.
    pub mlp: Mlp,
    /// Norm before the feed-forward.
    pub layer_norm2: LayerNorm,
}

impl EncoderLayer {
    /// [batch, tokens, width] -> [batch, tokens, width]
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        let h = self.layer_norm1.forward(x.clone());
        let x = self.self_attn.forward_added(h, mask, Some(x));
        let h = self.layer_norm2.forward(x.clone());
        self.mlp.forward_added(h, Some(x))
    }
}

/// A stack of encoder layers (transformers' `CLIPEncoder`).
#[derive(Module, Debug)]
pub struct Encoder {
    /// The layers, input first.
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// `x`: [batch, tokens, width]. Returns the output and, when `keep_states`, the residual
    /// stream before the first layer and after each layer (transformers'
    /// `hidden_states`: `layers + 1` tensors of [batch, tokens, width]).
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<4>>,
        keep_states: bool,
    ) -> (Tensor<3>, Vec<Tensor<3>>) {
        let mut states = Vec::new();
        let mut x = x;
        for layer in &self.layers {
            if keep_states {
                states.push(x.clone());
            }
            x = layer.forward(x, mask.clone());
        }
        if keep_states {
            states.push(x.clone());
        }
        (x, states)
    }
}
