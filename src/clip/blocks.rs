//! The transformer pieces both towers share: attention, MLP, pre-norm encoder layer.
//! Field names are transformers' (`self_attn.q_proj`, `layer_norm1`, `mlp.fc1`, ...), so
//! checkpoint names map onto them without a rename table.

use std::ops::Range;

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, gelu_approximate, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::Activation;
use super::packed::{self, PackCell};
use crate::base::engines::{fork_cols, fork_cols_in};
use crate::base::gemm::{self, ColumnWriter};

mod cols;
mod host;
mod pass;
mod split;
pub use cols::ColSplit;
pub use pass::{Cut, SplitPass};
pub use split::{RowSplit, check_cut, part_rows};

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
            eps: self.eps,
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
        self.forward_added(x, None, mask, None)
    }

    /// `residual + self.forward(x, mask)` for the query tokens `queries` ([batch, queries,
    /// width]; `None`: every token of `x` asks), keys and values from all of `x` ([batch,
    /// tokens, width]); `mask` is then broadcastable to [batch, heads, queries, tokens].
    /// The residual is added as the output is written. Returns [batch, queries, width].
    fn forward_added(
        &self,
        x: Tensor<3>,
        queries: Option<Tensor<3>>,
        mask: Option<Tensor<4>>,
        residual: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let [b, t, w] = x.dims();
        let tq = queries.as_ref().map_or(t, |q| q.dims()[1]);
        let h = self.num_heads;
        let d = w / h;
        let x = x.reshape([b * t, w]); // [rows, width]
        let xq = queries.map(|q| q.reshape([b * tq, w])); // [query rows, width]
        let scale = (d as f64).powf(-0.5);
        let packed = if packed::enabled(&x.device()) {
            let cells = [Q, K, V].map(|i| self.packed[i].get(self.proj(i)));
            let rows = packed::rows(&x);
            // The queries' rows, packed apart only where they are not `x`'s own.
            let q_rows = match &xq {
                Some(xq) => packed::rows(xq).map(Some),
                None => Some(None),
            };
            match (cells, rows, q_rows) {
                ([Some(q), Some(k), Some(v)], Some(rows), Some(q_rows)) => {
                    Some(([q, k, v], rows, q_rows))
                }
                _ => None,
            }
        } else {
            None
        };
        // On the packed path the softmax (with the scale and mask) runs on host values, one
        // pass a row; the mask's values are read once here for every range.
        let mask_host = match (&packed, &mask) {
            (Some(_), Some(m)) => packed::host(m).map(|v| Some((v, m.dims()))),
            (Some(_), None) => Some(None),
            (None, _) => None,
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
            // Projection `i` of the queries' rows (`ask`) or of every token's.
            let split = |i: usize, ask: bool| {
                let n = if ask { tq } else { t };
                let y = match &packed {
                    Some((ws, rows, q_rows)) => {
                        let rows = match (ask, q_rows) {
                            (true, Some(q_rows)) => q_rows,
                            _ => rows,
                        };
                        let out = ColumnWriter::new(b * n, cols.clone());
                        out.write(rows, &ws[i], cols.clone(), gemm::Activation::Identity, None);
                        packed::tensor(out.into_vec(), [b * n, cols.len()])
                    }
                    None => {
                        let input = match (ask, &xq) {
                            (true, Some(xq)) => xq.clone(),
                            _ => x.clone(),
                        };
                        linear_cols(self.proj(i), input, cols.clone())
                    }
                };
                y.reshape([b, n, heads.len(), d]).swap_dims(1, 2) // [b, heads, n, d]
            };
            let (q, k, v) = (split(Q, true), split(K, false), split(V, false));
            let mut scores = q.matmul(k.swap_dims(2, 3)); // [b, heads, tq, t]
            if let Some(mask) = &mask_host {
                let mask = mask.as_ref().map(|(v, dims)| (v.as_slice(), *dims));
                match packed::softmax(scores, scale as f32, mask, heads.start) {
                    Ok(p) => {
                        let ctx = p.matmul(v); // [b, heads, tq, d]
                        return ctx.swap_dims(1, 2).reshape([b * tq, cols.len()]);
                    }
                    Err(s) => scores = *s,
                }
            }
            let mut scores = scores * scale;
            if let Some(mask) = &mask {
                let [mb, mh, mt, ms] = mask.dims();
                scores = scores
                    + match mh {
                        1 => mask.clone(),
                        _ => mask.clone().slice([0..mb, heads.clone(), 0..mt, 0..ms]),
                    };
            }
            let ctx = softmax(scores, 3).matmul(v); // [b, heads, tq, d]
            ctx.swap_dims(1, 2).reshape([b * tq, cols.len()]) // [query rows, range]
        });
        let ctx = if parts.len() == 1 {
            parts.remove(0)
        } else {
            Tensor::cat(parts, 1)
        };
        linear_fused(
            &self.out_proj,
            &self.packed[OUT],
            ctx.reshape([b, tq, w]),
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
    /// Both norms' epsilon (burn's `LayerNorm` keeps its own private), for the host path.
    #[module(skip)]
    eps: f64,
}

impl EncoderLayer {
    /// [batch, tokens, width] -> [batch, tokens, width]
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        if let Some(y) = self.forward_host(&x, mask.as_ref(), None) {
            return y;
        }
        let h = self.layer_norm1.forward(x.clone());
        let x = self.self_attn.forward_added(h, None, mask, Some(x));
        let h = self.layer_norm2.forward(x.clone());
        self.mlp.forward_added(h, Some(x))
    }

    /// `self.forward(x, mask)`'s rows `pick` only ([`Pick`]): keys and values come from
    /// every token, queries, the attention output and the MLP from the picked rows alone.
    /// `x`: [batch, tokens, width]; returns [batch, width].
    pub fn forward_picked(&self, x: Tensor<3>, mask: Option<Tensor<4>>, pick: &Pick) -> Tensor<2> {
        let [b, t, w] = x.dims();
        // Only the packed path reads the positions back: on WebGPU a synchronous read
        // panics (the page's wgpu backend has none).
        if packed::enabled(&x.device())
            && let Some(pos) = pick.positions(t)
            && let Some(y) = self.forward_host(&x, mask.as_ref(), Some(&pos))
        {
            return y.reshape([b, w]);
        }
        // The picked query rows of the mask: [batch, 1, tokens, tokens] (the text tower's:
        // one per sequence, shared by the heads) -> [batch, 1, 1, tokens].
        let mask = match mask {
            None => None,
            Some(m) if m.dims() == [b, 1, t, t] => {
                Some(pick.select(m.reshape([b * t, t])).reshape([b, 1, 1, t]))
            }
            // Another mask layout: the whole layer, then its picked rows.
            Some(m) => return pick.select(self.forward(x, Some(m)).reshape([b * t, w])),
        };
        let h = self.layer_norm1.forward(x.clone());
        let rows = |y: Tensor<3>| pick.select(y.reshape([b * t, w])).reshape([b, 1, w]);
        let (hq, xq) = (rows(h.clone()), rows(x));
        let x = self.self_attn.forward_added(h, Some(hq), mask, Some(xq)); // [b, 1, w]
        let h = self.layer_norm2.forward(x.clone());
        self.mlp.forward_added(h, Some(x)).reshape([b, w])
    }
}

/// One token row per sequence, the one a tower pools ([`Encoder::forward_pooled`]): the
/// class token of an image, the end-of-text token of a prompt.
#[derive(Debug, Clone)]
pub struct Pick {
    /// [batch]: flat index (sequence * tokens + position) into the [batch * tokens] rows.
    pub index: Tensor<1, Int>,
}

impl Pick {
    /// Position `pos` of every one of `batch` sequences of `tokens` tokens.
    pub fn position(pos: usize, batch: usize, tokens: usize, device: &Device) -> Self {
        let index = (0..batch)
            .map(|s| (s * tokens + pos) as i64)
            .collect::<Vec<_>>();
        Self {
            index: Tensor::from_data(TensorData::new(index, [batch]), device),
        }
    }

    /// Each sequence's picked position among its `tokens`, read back from the index
    /// (`None` where an index is not in its own sequence's rows).
    pub fn positions(&self, tokens: usize) -> Option<Vec<usize>> {
        let index = self
            .index
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .ok()?;
        index
            .iter()
            .enumerate()
            .map(|(s, &i)| {
                let pos = usize::try_from(i).ok()?.checked_sub(s * tokens)?;
                (pos < tokens).then_some(pos)
            })
            .collect()
    }

    /// The picked rows of `rows`: [batch * tokens, width] -> [batch, width].
    pub fn select(&self, rows: Tensor<2>) -> Tensor<2> {
        rows.select(0, self.index.clone())
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

    /// The output's rows `pick` ([batch, width]) of [`Encoder::forward`] without the hidden
    /// states: the last layer computes queries, attention output and MLP for those rows
    /// only, as nothing else of it is read (for ViT-B/32 that skips 10/12 of the last
    /// layer's products, 7% of the tower: what the pooled embedding needs, and no more).
    /// The picked rows equal the full pass's up to rounding (the attention products of
    /// one query row may sum in another order than those of all rows).
    pub fn forward_pooled(&self, x: Tensor<3>, mask: Option<Tensor<4>>, pick: &Pick) -> Tensor<2> {
        let Some((last, before)) = self.layers.split_last() else {
            let [b, t, w] = x.dims();
            return pick.select(x.reshape([b * t, w]));
        };
        let mut x = x;
        for layer in before {
            x = layer.forward(x, mask.clone());
        }
        last.forward_picked(x, mask, pick)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    fn encoder(device: &Device) -> Encoder {
        EncoderConfig {
            width: 32,
            intermediate: 64,
            layers: 2,
            heads: 4,
            act: Activation::QuickGelu,
            eps: 1e-5,
        }
        .init(device)
    }

    fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// The pooled pass gives the full pass's picked rows: for the class token, for a
    /// different row per sequence under a per-sequence causal mask, and (by the fallback)
    /// under a mask of another layout. Only the attention products' summation order can
    /// differ, far below 1e-5 at these magnitudes; a wrong row, mask row or residual moves
    /// them by > 1e-2.
    #[test]
    fn pooled_pass_equals_the_full_pass_rows() {
        let device = Device::flex();
        let enc = encoder(&device);
        let (b, t) = (3, 5);
        let x = Tensor::<3>::random([b, t, 32], Distribution::Normal(0.0, 1.0), &device);
        let full = |mask: Option<Tensor<4>>, pick: &Pick| {
            let (y, _) = enc.forward(x.clone(), mask, false);
            pick.select(y.reshape([b * t, 32]))
        };
        let cls = Pick::position(0, b, t, &device);
        let got = enc.forward_pooled(x.clone(), None, &cls);
        assert!(max_diff(got, full(None, &cls)) < 1e-5);

        let causal: Vec<f32> = (0..b * t * t)
            .map(|i| if i % t > (i / t) % t { MASKED } else { 0.0 })
            .collect();
        let per_seq =
            Tensor::<4>::from_data(TensorData::new(causal.clone(), [b, 1, t, t]), &device);
        let ends = Pick {
            index: Tensor::from_data(TensorData::new(vec![4i64, 5 + 2, 10 + 3], [b]), &device),
        };
        let got = enc.forward_pooled(x.clone(), Some(per_seq.clone()), &ends);
        assert!(max_diff(got, full(Some(per_seq), &ends)) < 1e-5);

        let shared = Tensor::<4>::from_data(
            TensorData::new(causal[..t * t].to_vec(), [1, 1, t, t]),
            &device,
        );
        let got = enc.forward_pooled(x.clone(), Some(shared.clone()), &ends);
        assert!(max_diff(got, full(Some(shared), &ends)) < 1e-5);

        // A wrong pick is caught: the class rows are not the end rows.
        let got = enc.forward_pooled(x.clone(), None, &cls);
        assert!(max_diff(got, full(None, &ends)) > 1e-2);
    }
}
