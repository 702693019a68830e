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

use burn::nn::LayerNorm;
use burn::tensor::{DType, Tensor};

use super::super::config::Activation;
use super::super::packed::{self, HostValues};
use super::{EncoderLayer, K, OUT, Q, V, lcm};
use crate::base::engines::{fork_cols, fork_cols_in};
use crate::base::gemm::{self, ColumnWriter, Heads, PackedRows, PackedWeight, RowsWriter};

/// A LayerNorm's gamma and beta on the host.
struct Norm {
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
    fn rows(&self, x: &[f32], m: usize) -> PackedRows {
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

impl EncoderLayer {
    /// [`EncoderLayer::forward`] on host values: `x` [batch, tokens, width] -> [batch,
    /// tokens, width]; with `pick` (a token position per sequence), the rows of
    /// [`EncoderLayer::forward_picked`] instead: [batch, 1, width]. `None` where this path
    /// does not run: off the packed path ([`packed::enabled`]), for tensors that are not
    /// f32, MLP activations other than quick_gelu, or masks that do not broadcast to
    /// [batch, heads, tokens, tokens].
    pub(super) fn forward_host(
        &self,
        x: &Tensor<3>,
        mask: Option<&Tensor<4>>,
        pick: Option<&[usize]>,
    ) -> Option<Tensor<3>> {
        let attn = &self.self_attn;
        if !packed::enabled(&x.device()) || self.mlp.act != Activation::QuickGelu {
            return None;
        }
        let [b, t, w] = x.dims();
        let (h, eps) = (attn.num_heads, self.eps);
        let d = w / h.max(1);
        if h == 0 || d * h != w || pick.is_some_and(|p| p.len() != b || p.iter().any(|&i| i >= t)) {
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
        let (norm1, norm2) = (
            Norm::new(&self.layer_norm1, eps)?,
            Norm::new(&self.layer_norm2, eps)?,
        );
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
        let rows = norm1.rows(xs, b * t);
        // The queries ask from every token, or from the picked one of each sequence: then
        // their rows and the residual are those tokens' alone.
        let picked: Option<Vec<f32>> = pick.map(|p| {
            p.iter()
                .enumerate()
                .flat_map(|(s, &i)| xs[(s * t + i) * w..][..w].to_vec())
                .collect()
        });
        let tq = if pick.is_some() { 1 } else { t };
        let q_rows = picked.as_ref().map(|p| norm1.rows(p, b));
        let residual = picked.as_deref().unwrap_or(xs);
        let mask_row = |s: usize, head: usize, i: usize| {
            let (m, [mb, mh, mt, ms]) = mask.as_ref()?;
            let at = |n: usize, i: usize| if n == 1 { 0 } else { i };
            let query = pick.map_or(i, |p| p[s]);
            let row = ((at(*mb, s) * mh + at(*mh, head)) * mt + at(*mt, query)) * ms;
            Some(&m.as_slice()[row..row + ms])
        };
        let scale = (d as f64).powf(-0.5) as f32;
        let shape = Heads {
            batch: b,
            keys: t,
            queries: tq,
            head_dim: d,
        };
        // Whole heads per engine, each range also whole panels of the packed GEMM.
        let ctx = RowsWriter::new(b * tq, w);
        fork_cols_in(w, lcm(d, gemm::NR), |cols| {
            let project = |rows: &PackedRows, wt: &PackedWeight| {
                let out = ColumnWriter::new(rows.dims()[0], cols.clone());
                out.write(rows, wt, cols.clone(), gemm::Activation::Identity, None);
                out.into_vec()
            };
            let q = project(q_rows.as_ref().unwrap_or(&rows), &wq);
            let (k, v) = (project(&rows, &wk), project(&rows, &wv));
            let head0 = cols.start / d;
            let y = gemm::attend(&q, &k, &v, shape, scale, |s, hl, i| {
                mask_row(s, head0 + hl, i)
            });
            ctx.write(cols, &y);
        });
        let x = linear(
            &ctx.into_rows(),
            &wo,
            gemm::Activation::Identity,
            Some(residual),
        );
        let rows = norm2.rows(&x, b * tq);
        let inner = w1.dims()[1];
        let hidden = RowsWriter::new(b * tq, inner);
        fork_cols(inner, |cols| {
            let out = ColumnWriter::new(b * tq, cols.clone());
            out.write(&rows, &w1, cols.clone(), gemm::Activation::QuickGelu, None);
            hidden.write(cols, &out.into_vec());
        });
        let y = linear(
            &hidden.into_rows(),
            &w2,
            gemm::Activation::Identity,
            Some(&x),
        );
        Some(packed::tensor(y, [b, tq, w]))
    }
}
