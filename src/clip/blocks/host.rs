//! An encoder layer on host values, on the packed path (issue 12): the layer's values stay
//! in host buffers from its input to its output, and every product writes the next one's
//! input in the layout the micro-kernel reads.
//!
//! - LayerNorm is computed as its rows are packed ([`PackedRows::normalized`]).
//! - Attention runs whole heads on host values ([`gemm::attend`]), each engine its own
//!   heads, and writes its heads' columns of the output projection's packed input
//!   ([`RowsWriter`]).
//! - fc1 writes fc2's packed input the same way, each engine its own columns.
//!
//! What this replaces (the layer in burn ops around the packed products) ran LayerNorm,
//! the attention's matmuls, their `swap_dims` copies, the join of the heads' ranges and the
//! packing of every product's input as flex ops, the packing on the part's engine alone
//! while the engines lent to it waited (about 10% of a batch-1 pass in a profile).

use std::ops::Range;
use std::sync::Arc;

use burn::nn::LayerNorm;
use burn::tensor::{DType, Tensor};

use super::super::config::Activation;
use super::super::packed::{self, HostValues};
use super::{EncoderLayer, K, OUT, Q, V, lcm};
use crate::base::engines::{fork_cols, fork_cols_in};
use crate::base::stages;

// The layer's stages for `monoscope bench --stages` ([`stages`]), in the order they run.
/// LayerNorm 1, its output packed for the products.
const NORM1_STAGE: &str = "layer: LayerNorm 1";
/// q, k and v of the heads and their attention.
const ATTENTION_STAGE: &str = "layer: q, k, v and attention";
/// The attention's output projection and the residual.
const OUT_STAGE: &str = "layer: output projection";
/// LayerNorm 2, packed.
const NORM2_STAGE: &str = "layer: LayerNorm 2";
/// fc1 with quick_gelu.
const FC1_STAGE: &str = "layer: fc1 + quick_gelu";
/// fc2 and the residual.
const FC2_STAGE: &str = "layer: fc2";
use crate::base::gemm::{self, ColumnWriter, Heads, PackedRows, PackedWeight, RowsWriter};

/// A LayerNorm's gamma and beta on the host.
pub(super) struct Norm {
    gamma: HostValues,
    beta: Option<HostValues>,
    eps: f32,
}

impl Norm {
    fn new(ln: &LayerNorm, eps: f64) -> Option<Self> {
        let gamma = ln.gamma.val();
        if gamma.dtype() != DType::F32 {
            return None;
        }
        let beta = match &ln.beta {
            Some(b) => Some(packed::host(&b.val())?),
            None => None,
        };
        Some(Self {
            gamma: packed::host(&gamma)?,
            beta,
            eps: eps as f32,
        })
    }

    /// `x` ([m, width] row-major) normalised and packed.
    pub(super) fn rows(&self, x: &[f32], m: usize) -> PackedRows {
        let k = self.gamma.as_slice().len();
        let beta = self.beta.as_ref().map(HostValues::as_slice);
        PackedRows::normalized(x, m, k, self.gamma.as_slice(), beta, self.eps)
    }
}

/// `act(rows · w + bias) + residual`, row-major, its columns shared with the engines this
/// thread was lent.
fn linear(
    rows: &PackedRows,
    w: &PackedWeight,
    act: gemm::Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let ([m, _], [_, n]) = (rows.dims(), w.dims());
    let out = ColumnWriter::new(m, 0..n);
    fork_cols(n, |cols| out.write(rows, w, cols, act, residual));
    out.into_vec()
}

/// An encoder layer's packed weights and norms on the host: what [`EncoderLayer::host`]
/// gathers once for a pass.
pub(crate) struct HostLayer {
    /// q, k, v and the output projection ([`Q`], [`K`], [`V`], [`OUT`]).
    pub(super) attn: [Arc<PackedWeight>; 4],
    pub(super) w1: Arc<PackedWeight>,
    pub(super) w2: Arc<PackedWeight>,
    pub(super) norm1: Norm,
    pub(super) norm2: Norm,
    pub(super) heads: usize,
}

impl HostLayer {
    /// Residual width.
    pub(super) fn width(&self) -> usize {
        self.attn[Q].dims()[1]
    }

    /// Values per head.
    pub(super) fn head_dim(&self) -> usize {
        self.width() / self.heads
    }

    /// The attention's scale, `head_dim^-0.5`.
    pub(super) fn scale(&self) -> f32 {
        (self.head_dim() as f64).powf(-0.5) as f32
    }

    /// Columns `cols` of projection `i` ([`Q`], [`K`], [`V`]) of `rows`: [m, cols.len()].
    pub(super) fn project(&self, i: usize, rows: &PackedRows, cols: Range<usize>) -> Vec<f32> {
        let out = ColumnWriter::new(rows.dims()[0], cols.clone());
        out.write(rows, &self.attn[i], cols, gemm::Activation::Identity, None);
        out.into_vec()
    }

    /// The layer after the attention: the output projection of `ctx` (the heads' output,
    /// [m, width] packed) plus `residual` ([m, width]), then LayerNorm, the MLP and its
    /// residual. Returns [m, width] row-major.
    pub(super) fn rest(&self, ctx: &PackedRows, residual: &[f32]) -> Vec<f32> {
        let m = ctx.dims()[0];
        let x = stages::time(OUT_STAGE, || {
            linear(
                ctx,
                &self.attn[OUT],
                gemm::Activation::Identity,
                Some(residual),
            )
        });
        let rows = stages::time(NORM2_STAGE, || self.norm2.rows(&x, m));
        let inner = self.w1.dims()[1];
        let hidden = RowsWriter::new(m, inner);
        stages::time(FC1_STAGE, || {
            fork_cols(inner, |cols| {
                let out = ColumnWriter::new(m, cols.clone());
                out.write(
                    &rows,
                    &self.w1,
                    cols.clone(),
                    gemm::Activation::QuickGelu,
                    None,
                );
                hidden.write(cols, &out.into_vec());
            })
        });
        stages::time(FC2_STAGE, || {
            linear(
                &hidden.into_rows(),
                &self.w2,
                gemm::Activation::Identity,
                Some(&x),
            )
        })
    }
}

impl EncoderLayer {
    /// The layer's weights and norms for the host path, or `None` where it does not run:
    /// MLP activations other than quick_gelu, a width that is not whole heads, or weights
    /// that are not f32 flex tensors.
    pub(crate) fn host(&self) -> Option<HostLayer> {
        let attn = &self.self_attn;
        let h = attn.num_heads;
        let [w, _] = attn.q_proj.weight.dims();
        if self.mlp.act != Activation::QuickGelu || h == 0 || !w.is_multiple_of(h) {
            return None;
        }
        let cells = [Q, K, V, OUT].map(|i| attn.packed[i].get(attn.proj(i)));
        let [Some(wq), Some(wk), Some(wv), Some(wo)] = cells else {
            return None;
        };
        let mlp = &self.mlp;
        let (Some(w1), Some(w2)) = (mlp.packed[0].get(&mlp.fc1), mlp.packed[1].get(&mlp.fc2))
        else {
            return None;
        };
        Some(HostLayer {
            attn: [wq, wk, wv, wo],
            w1,
            w2,
            norm1: Norm::new(&self.layer_norm1, self.eps)?,
            norm2: Norm::new(&self.layer_norm2, self.eps)?,
            heads: h,
        })
    }

    /// [`EncoderLayer::forward`] on host values: `x` [batch, tokens, width] -> [batch,
    /// tokens, width]; with `pick` (a token position per sequence), the rows of
    /// [`EncoderLayer::forward_picked`] instead: [batch, 1, width]. `None` where this path
    /// does not run: off the packed path ([`packed::enabled`]), where [`EncoderLayer::host`]
    /// gives none, for tensors that are not f32, or masks that do not broadcast to
    /// [batch, heads, tokens, tokens].
    pub(super) fn forward_host(
        &self,
        x: &Tensor<3>,
        mask: Option<&Tensor<4>>,
        pick: Option<&[usize]>,
    ) -> Option<Tensor<3>> {
        if !packed::enabled(&x.device()) {
            return None;
        }
        let [b, t, w] = x.dims();
        if pick.is_some_and(|p| p.len() != b || p.iter().any(|&i| i >= t)) {
            return None;
        }
        let layer = self.host()?;
        let (h, d) = (layer.heads, layer.head_dim());
        if layer.width() != w {
            return None;
        }
        let mask = match mask {
            None => None,
            Some(m) => {
                let dims @ [mb, mh, mt, ms] = m.dims();
                let fits =
                    ms == t && [1, b].contains(&mb) && [1, h].contains(&mh) && [1, t].contains(&mt);
                if !fits || m.dtype() != DType::F32 {
                    return None;
                }
                Some((packed::host(m)?, dims))
            }
        };
        let xv = packed::host(x)?;
        let xs = xv.as_slice();
        let rows = stages::time(NORM1_STAGE, || layer.norm1.rows(xs, b * t));
        // The queries ask from every token, or from the picked one of each sequence: then
        // their rows and the residual are those tokens' alone.
        let picked: Option<Vec<f32>> = pick.map(|p| {
            p.iter()
                .enumerate()
                .flat_map(|(s, &i)| xs[(s * t + i) * w..][..w].to_vec())
                .collect()
        });
        let tq = if pick.is_some() { 1 } else { t };
        let q_rows = picked.as_ref().map(|p| layer.norm1.rows(p, b));
        let residual = picked.as_deref().unwrap_or(xs);
        let mask_row = |s: usize, head: usize, i: usize| {
            let (m, [mb, mh, mt, ms]) = mask.as_ref()?;
            let at = |n: usize, i: usize| if n == 1 { 0 } else { i };
            let query = pick.map_or(i, |p| p[s]);
            let row = ((at(*mb, s) * mh + at(*mh, head)) * mt + at(*mt, query)) * ms;
            Some(&m.as_slice()[row..row + ms])
        };
        let shape = Heads {
            batch: b,
            keys: t,
            queries: tq,
            head_dim: d,
        };
        // Whole heads per engine, each range also whole panels of the packed GEMM.
        let ctx = RowsWriter::new(b * tq, w);
        stages::time(ATTENTION_STAGE, || {
            fork_cols_in(w, lcm(d, gemm::NR), |cols| {
                let q = layer.project(Q, q_rows.as_ref().unwrap_or(&rows), cols.clone());
                let k = layer.project(K, &rows, cols.clone());
                let v = layer.project(V, &rows, cols.clone());
                let head0 = cols.start / d;
                let y = gemm::attend(&q, &k, &v, shape, layer.scale(), |s, hl, i| {
                    mask_row(s, head0 + hl, i)
                });
                ctx.write(cols, &y);
            })
        });
        let y = layer.rest(&ctx.into_rows(), residual);
        Some(packed::tensor(y, [b, tq, w]))
    }
}
