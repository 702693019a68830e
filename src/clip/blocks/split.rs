//! One sequence's pass through an encoder cut by token rows between engines that share no
//! memory (issue 12): the page's engine workers, each a wasm instance with its own copy of
//! the model. The page runs on one thread per worker (wasm threads need a nightly
//! toolchain), so a batch of several images is shared by whole images, and a single image
//! used to leave every worker but one idle.
//!
//! Each part holds a contiguous range of the token rows and runs the whole layer for them:
//! LayerNorm, the projections, attention for its own queries, the output projection and
//! the MLP are row by row, and only the attention reads other rows, the keys and values of
//! every token. So once a layer each part hands its rows' keys and values to the others
//! ([`RowSplit::keys_values`]) and goes on with everyone's ([`RowSplit::attend`]): one
//! exchange of `2 x tokens x width` values a layer, no other traffic, no duplicated work.
//! The last layer computes the pooled token's row alone, as [`super::Encoder::forward_pooled`]
//! does, on the part that holds it.
//!
//! Each part still streams every weight for its rows, so at ViT-B/32's 50 tokens its share
//! took 0.6-0.7 of the whole pass; the page now cuts by output columns instead
//! ([`super::ColSplit`]) wherever every part gets a head ([`super::Cut::Auto`]).
//!
//! The products, the norms and the attention give every value bits that depend only on its
//! own row's inputs (`crate::base::gemm`: one multiply-add chain per value in index order,
//! whatever the row count; `gemm::attend`: per head and query), so the parts' result is
//! bit for bit the pass of the whole sequence on one engine (`tests` below, and the page's
//! browser test).

use std::ops::Range;

use burn::tensor::Tensor;

use super::host::HostLayer;
use super::{Encoder, K, Q, V};
use crate::base::gemm::{self, Heads, PackedRows};
use crate::clip::packed;
use crate::error::{Error, Result};

/// One part of a sequence's pass through an [`Encoder`] cut by token rows
/// ([`Encoder::split`]). Call [`RowSplit::keys_values`] and then [`RowSplit::attend`] once
/// per layer, on every part in step; then [`RowSplit::output`] on the part that holds the
/// pooled token.
pub struct RowSplit {
    layers: Vec<HostLayer>,
    part: usize,
    parts: usize,
    tokens: usize,
    width: usize,
    /// The pooled token's position.
    pick: usize,
    /// The next layer to run.
    layer: usize,
    /// This part's residual rows, [rows, width] row-major; after the last layer the pooled
    /// token's row on the part that holds it, nothing on the others.
    x: Vec<f32>,
    /// This part's queries of the current layer, [query rows, width], between
    /// [`RowSplit::keys_values`] and [`RowSplit::attend`] (none on the last layer's parts
    /// without the pooled token).
    q: Option<Vec<f32>>,
    /// Whether [`RowSplit::keys_values`] ran for the current layer.
    asked: bool,
}

/// Token rows of part `part` of `parts`: contiguous, in part order, sizes differing by at
/// most one (the first `tokens % parts` parts have the extra row).
pub fn part_rows(tokens: usize, part: usize, parts: usize) -> Range<usize> {
    let (base, extra) = (tokens / parts, tokens % parts);
    let start = part * base + part.min(extra);
    start..start + base + usize::from(part < extra)
}

/// Errors unless a batch of `batch` sequences of `tokens` can be cut into part `part` of
/// `parts` with the pooled token at `pick`: one sequence, `pick < tokens`, `1 <= parts <=
/// tokens` and `part < parts`.
pub fn check_cut(
    batch: usize,
    tokens: usize,
    pick: usize,
    part: usize,
    parts: usize,
) -> Result<()> {
    if batch != 1 || pick >= tokens {
        return Err(Error::Invalid(format!(
            "a split pass takes one sequence and a position in it, not a batch of {batch} and position {pick} of {tokens}"
        )));
    }
    if parts == 0 || parts > tokens || part >= parts {
        return Err(Error::Invalid(format!(
            "part {part} of {parts} does not cut {tokens} token rows"
        )));
    }
    Ok(())
}

impl Encoder {
    /// Part `part` of `parts` of one sequence's pass: `x` [1, tokens, width] (the first
    /// layer's input, whole), `pick` the position whose final row [`RowSplit::output`]
    /// gives. Errors where the cut does not fit ([`check_cut`]) or the layers cannot run on
    /// host values (off the packed path: another backend, or an MLP activation other than
    /// quick_gelu).
    pub fn split(&self, x: &Tensor<3>, pick: usize, part: usize, parts: usize) -> Result<RowSplit> {
        let [b, tokens, width] = x.dims();
        check_cut(b, tokens, pick, part, parts)?;
        let own = x
            .clone()
            .slice([0..b, part_rows(tokens, part, parts), 0..width]);
        self.split_part(own, tokens, pick, part, parts)
    }

    /// [`Encoder::split`] from this part's own rows of the first layer's input: `x` [1,
    /// rows, width], `rows` those of [`part_rows`]`(tokens, part, parts)`.
    pub fn split_part(
        &self,
        x: Tensor<3>,
        tokens: usize,
        pick: usize,
        part: usize,
        parts: usize,
    ) -> Result<RowSplit> {
        let width = x.dims()[2];
        let (layers, x) = self.host_part(&x, tokens, pick, part, parts)?;
        Ok(RowSplit {
            layers,
            part,
            parts,
            tokens,
            width,
            pick,
            layer: 0,
            x,
            q: None,
            asked: false,
        })
    }

    /// What a part of a split pass (either cut) starts from: the layers on host values and
    /// this part's rows of the first layer's input (`x` [1, rows, width], `rows` those of
    /// [`part_rows`]`(tokens, part, parts)`) as host values, row-major. Errors where the cut
    /// does not fit ([`check_cut`]), `x` holds other rows, or the layers cannot run on host
    /// values (off the packed path, or an MLP activation other than quick_gelu).
    pub(super) fn host_part(
        &self,
        x: &Tensor<3>,
        tokens: usize,
        pick: usize,
        part: usize,
        parts: usize,
    ) -> Result<(Vec<HostLayer>, Vec<f32>)> {
        let [b, n, width] = x.dims();
        check_cut(b, tokens, pick, part, parts)?;
        let rows = part_rows(tokens, part, parts);
        if n != rows.len() {
            return Err(Error::Invalid(format!(
                "part {part} of {parts} holds {} of {tokens} token rows, not {n}",
                rows.len()
            )));
        }
        let unsupported =
            || Error::Invalid("this model or backend cannot split a pass between engines".into());
        if !packed::enabled(&x.device()) {
            return Err(unsupported());
        }
        let layers = self
            .layers
            .iter()
            .map(|l| l.host().filter(|h| h.width() == width))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(unsupported)?;
        let x = packed::host(x).ok_or_else(unsupported)?.as_slice().to_vec();
        Ok((layers, x))
    }
}

impl RowSplit {
    /// Layers of the pass (rounds of [`RowSplit::keys_values`] and [`RowSplit::attend`]).
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Whether every layer has run.
    pub fn done(&self) -> bool {
        self.layer == self.layers.len()
    }

    /// Which part of the pass this is (`0..parts`).
    pub fn part(&self) -> usize {
        self.part
    }

    /// This part's token rows.
    pub fn rows(&self) -> Range<usize> {
        part_rows(self.tokens, self.part, self.parts)
    }

    /// This part's keys and values of the current layer, for every part's
    /// [`RowSplit::attend`]: [2, rows, width] (keys, then values), row-major. Also
    /// computes the part's queries.
    pub fn keys_values(&mut self) -> Result<Vec<f32>> {
        let Some(layer) = self.layers.get(self.layer) else {
            return Err(Error::Invalid("the split pass has run every layer".into()));
        };
        if self.asked {
            return Err(Error::Invalid(
                "this layer's keys and values were already given".into(),
            ));
        }
        let (own, w) = (self.rows(), self.width);
        let rows = layer.norm1.rows(&self.x, own.len());
        let all = 0..w;
        let last = self.layer + 1 == self.layers.len();
        self.q = if !last {
            Some(layer.project(Q, &rows, all.clone()))
        } else if own.contains(&self.pick) {
            // The last layer asks from the pooled token alone (as the pooled pass does).
            let at = (self.pick - own.start) * w;
            let picked = layer.norm1.rows(&self.x[at..at + w], 1);
            Some(layer.project(Q, &picked, all.clone()))
        } else {
            None
        };
        let mut kv = layer.project(K, &rows, all.clone());
        kv.extend(layer.project(V, &rows, all));
        self.asked = true;
        Ok(kv)
    }

    /// Runs the rest of the current layer with every part's [`RowSplit::keys_values`], in
    /// part order, and moves to the next layer.
    pub fn attend(&mut self, kv: &[&[f32]]) -> Result<()> {
        let Some(layer) = self.layers.get(self.layer) else {
            return Err(Error::Invalid("the split pass has run every layer".into()));
        };
        if !self.asked {
            return Err(Error::Invalid(
                "attend needs this part's keys and values first".into(),
            ));
        }
        let w = self.width;
        if kv.len() != self.parts {
            return Err(Error::Invalid(format!(
                "keys and values of {} parts; the pass has {}",
                kv.len(),
                self.parts
            )));
        }
        for (p, part) in kv.iter().enumerate() {
            let want = 2 * part_rows(self.tokens, p, self.parts).len() * w;
            if part.len() != want {
                return Err(Error::Invalid(format!(
                    "part {p}'s keys and values hold {} values, not {want}",
                    part.len()
                )));
            }
        }
        // Every token's keys, then every token's values: [tokens, width] each.
        let half = |i: usize| -> Vec<f32> {
            kv.iter()
                .flat_map(|part| {
                    let n = part.len() / 2;
                    part[i * n..(i + 1) * n].iter().copied()
                })
                .collect()
        };
        let (keys, values) = (half(0), half(1));
        let last = self.layer + 1 == self.layers.len();
        self.x = match self.q.take() {
            Some(q) => {
                let queries = q.len() / w;
                let shape = Heads {
                    batch: 1,
                    keys: self.tokens,
                    queries,
                    head_dim: layer.head_dim(),
                };
                let ctx = gemm::attend(&q, &keys, &values, shape, layer.scale(), |_, _, _| None);
                let residual = if last {
                    let at = (self.pick - self.rows().start) * w;
                    &self.x[at..at + w]
                } else {
                    &self.x[..]
                };
                layer.rest(&PackedRows::new(&ctx, queries, w), residual)
            }
            None => Vec::new(),
        };
        self.layer += 1;
        self.asked = false;
        Ok(())
    }

    /// The pooled token's final row ([width]) once every layer has run, on the part that
    /// holds it; `None` before, or on another part.
    pub fn output(&self) -> Option<&[f32]> {
        (self.done() && self.rows().contains(&self.pick)).then_some(&self.x[..])
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::super::{EncoderConfig, Pick};
    use super::*;
    use crate::clip::config::Activation;

    #[test]
    fn parts_cover_the_rows_in_order() {
        for tokens in [1, 2, 5, 50, 77] {
            for parts in 1..=tokens.min(8) {
                let all: Vec<_> = (0..parts)
                    .flat_map(|p| part_rows(tokens, p, parts))
                    .collect();
                assert_eq!(all, (0..tokens).collect::<Vec<_>>());
                let sizes: Vec<_> = (0..parts)
                    .map(|p| part_rows(tokens, p, parts).len())
                    .collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
    }

    /// Runs the parts in step, as the page's workers do, and returns the output.
    fn run(enc: &Encoder, x: &Tensor<3>, pick: usize, parts: usize) -> Vec<f32> {
        let mut split: Vec<RowSplit> = (0..parts)
            .map(|p| enc.split(x, pick, p, parts).unwrap())
            .collect();
        for _ in 0..enc.layers.len() {
            let kv: Vec<Vec<f32>> = split.iter_mut().map(|s| s.keys_values().unwrap()).collect();
            let refs: Vec<&[f32]> = kv.iter().map(Vec::as_slice).collect();
            for s in &mut split {
                s.attend(&refs).unwrap();
            }
        }
        let outs: Vec<_> = split.iter().filter_map(RowSplit::output).collect();
        assert_eq!(outs.len(), 1, "one part holds the pooled token");
        outs[0].to_vec()
    }

    /// A quick_gelu encoder of `layers` layers, `heads` heads, an MLP 4 x `width` wide, and
    /// one random sequence of `tokens` for it; `None` where the packed path does not run.
    fn setup(
        width: usize,
        layers: usize,
        heads: usize,
        tokens: usize,
    ) -> Option<(Encoder, Tensor<3>, Device)> {
        let device = Device::flex();
        if !packed_here(&device) {
            return None;
        }
        let enc = EncoderConfig {
            width,
            intermediate: 4 * width,
            layers,
            heads,
            act: Activation::QuickGelu,
            eps: 1e-5,
        }
        .init(&device);
        let x = Tensor::<3>::random([1, tokens, width], Distribution::Normal(0.0, 1.0), &device);
        Some((enc, x, device))
    }

    /// Whether the packed path runs here; on x86_64 it must (every machine this project
    /// runs on has AVX2 and FMA), elsewhere a split pass is refused (`Encoder::split`).
    fn packed_here(device: &Device) -> bool {
        #[cfg(target_arch = "x86_64")]
        assert!(packed::enabled(device), "the packed path runs on x86_64");
        packed::enabled(device)
    }

    /// Split into 1, 2, 3 and 7 parts, the pass gives the pooled pass's row bit for bit, for
    /// the first token and for one inside a later part (ViT-B/32's 50 tokens, a narrow
    /// width to stay quick).
    #[test]
    fn split_pass_equals_the_pooled_pass_bit_for_bit() {
        let t = 50;
        let Some((enc, x, device)) = setup(64, 3, 4, t) else {
            return;
        };
        for pick in [0, 37] {
            let whole = enc.forward_pooled(x.clone(), None, &Pick::position(pick, 1, t, &device));
            let whole: Vec<f32> = whole.into_data().try_to_vec().unwrap();
            for parts in [1, 2, 3, 7] {
                assert_eq!(
                    run(&enc, &x, pick, parts),
                    whole,
                    "{parts} parts, token {pick}"
                );
            }
        }
    }

    #[test]
    fn misuse_is_an_error() {
        let Some((enc, x, device)) = setup(32, 1, 2, 4) else {
            return;
        };
        assert!(enc.split(&x, 0, 2, 2).is_err(), "part past the parts");
        assert!(enc.split(&x, 0, 0, 5).is_err(), "more parts than tokens");
        assert!(enc.split(&x, 4, 0, 2).is_err(), "position past the tokens");
        let two = Tensor::<3>::random([2, 4, 32], Distribution::Normal(0.0, 1.0), &device);
        assert!(enc.split(&two, 0, 0, 1).is_err(), "a batch of two");
        let mut s = enc.split(&x, 0, 0, 2).unwrap();
        assert!(s.attend(&[&[], &[]]).is_err(), "attend before keys_values");
        let kv = s.keys_values().unwrap();
        assert!(s.keys_values().is_err(), "keys_values twice");
        assert!(s.attend(&[&kv]).is_err(), "one part's values for two parts");
        assert!(s.attend(&[&kv, &kv[1..]]).is_err(), "a short part");
        s.attend(&[&kv, &kv]).unwrap();
        assert!(s.done() && s.output().is_some());
        assert!(s.keys_values().is_err(), "past the last layer");
    }
}
