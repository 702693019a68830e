//! One sequence's pass through an encoder cut by output columns between engines that share
//! no memory (issue 12): the page's engine workers at batch 1, as [`super::RowSplit`] but
//! with the weights cut instead of the token rows.
//!
//! Cut by token rows, each part still streams every weight of every layer for its half of
//! the rows, and at ViT-B/32's 50 tokens a part's share took 0.6-0.7 of the whole pass
//! (README, "Where issue 12 stands"). Cut by columns, each part computes its own columns
//! of every product for all the rows and reads only its columns of each weight, so its
//! share of the work and of the memory traffic is its share of the columns. The price is
//! four exchanges a layer instead of one: every product but the attention's needs whole
//! rows of its input, so after each one the parts swap their columns (an all-gather):
//!
//! | round | each part computes                                        | and swaps        |
//! |-------|-----------------------------------------------------------|------------------|
//! | open  | its token rows of the first layer's input                 | rows -> `x`      |
//! | heads | LayerNorm (all rows), q, k, v and attention of its heads  | heads' output    |
//! | out   | its columns of the output projection, plus the residual   | columns -> `mid` |
//! | up    | LayerNorm (all rows), its columns of fc1 with quick_gelu  | hidden columns   |
//! | down  | its columns of fc2, plus the residual                     | columns -> `x`   |
//!
//! The cuts fall on whole heads and whole panels of the packed GEMM, and every value comes
//! from one multiply-add chain in index order that does not depend on which columns its
//! product computes (`crate::base::gemm`; the native pass cuts the same products by
//! columns between threads), nor the norms and the attention on anything but their own row
//! and head: so the parts' result is the whole pass's bit for bit, with no partial sums
//! added up in another order (`tests` below, `tests/split.rs`, the page's browser test).

use std::ops::Range;

use burn::tensor::Tensor;

use super::host::HostLayer;
use super::split::part_rows;
use super::{Encoder, K, OUT, Q, V, lcm};
use crate::base::gemm::{self, ColumnWriter, Heads, PackedRows, PackedWeight, RowsWriter};
use crate::error::{Error, Result};

/// Where a [`ColSplit`] is: the next round's work (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Open,
    Heads,
    Out,
    Up,
    Down,
    Done,
}

/// One part of a sequence's pass through an [`Encoder`] cut by output columns
/// ([`Encoder::split_cols`]). Call [`ColSplit::share`] and then [`ColSplit::gather`] with
/// every part's share, on every part in step, until [`ColSplit::done`]; then every part
/// holds the pooled token's final row ([`ColSplit::output`]).
pub struct ColSplit {
    layers: Vec<HostLayer>,
    part: usize,
    parts: usize,
    tokens: usize,
    width: usize,
    /// The pooled token's position.
    pick: usize,
    /// The current layer.
    layer: usize,
    round: Round,
    /// Whether [`ColSplit::share`] ran for the current round.
    shared: bool,
    /// The residual stream, [rows, width] row-major: this part's token rows before the
    /// open round's swap, then every row of the current layer's input (the pooled row
    /// alone once the pass is done).
    x: Vec<f32>,
    /// The attention block's output, the MLP's residual: [query rows, width].
    mid: Vec<f32>,
    /// The heads' output or the hidden layer, swapped and packed for the next product.
    packed: Option<PackedRows>,
}

/// Columns of part `part` of `parts` of `n` cut in runs of `unit`: contiguous, in part
/// order, differing by at most one run (the last may be short where `unit` does not divide
/// `n`).
fn part_cols(n: usize, unit: usize, part: usize, parts: usize) -> Range<usize> {
    let runs = part_rows(n.div_ceil(unit), part, parts);
    (runs.start * unit).min(n)..(runs.end * unit).min(n)
}

/// `[m, n]` row-major from every part's `[m, cols]` share, the parts' columns `cut(p)`.
fn join_cols(
    shares: &[&[f32]],
    m: usize,
    n: usize,
    cut: impl Fn(usize) -> Range<usize>,
) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for (p, share) in shares.iter().enumerate() {
        let cols = cut(p);
        let w = cols.len();
        if w == 0 {
            continue;
        }
        for (row, src) in out.chunks_exact_mut(n).zip(share.chunks_exact(w)) {
            row[cols.clone()].copy_from_slice(src);
        }
    }
    out
}

/// Columns `cols` of `act(rows · w + bias) + residual` ([m, cols.len()]; `residual` [m, n]).
fn columns(
    rows: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    act: gemm::Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let out = ColumnWriter::new(rows.dims()[0], cols.clone());
    out.write(rows, w, cols, act, residual);
    out.into_vec()
}

impl Encoder {
    /// Part `part` of `parts` of one sequence's pass cut by output columns: `x` [1, rows,
    /// width], this part's token rows ([`part_rows`]`(tokens, part, parts)`) of the first
    /// layer's input; `pick` the position whose final row [`ColSplit::output`] gives.
    /// Errors where the cut does not fit ([`super::check_cut`]; at most
    /// [`Encoder::column_parts`] parts) or the layers cannot run on host values (off the
    /// packed path, or an MLP activation other than quick_gelu).
    pub fn split_cols(
        &self,
        x: Tensor<3>,
        tokens: usize,
        pick: usize,
        part: usize,
        parts: usize,
    ) -> Result<ColSplit> {
        let width = x.dims()[2];
        let (layers, x) = self.host_part(&x, tokens, pick, part, parts)?;
        let most = self.column_parts();
        if parts > most {
            return Err(Error::Invalid(format!(
                "{parts} parts do not cut {} heads ({most} runs of whole heads and GEMM panels)",
                layers.first().map_or(0, |l| l.heads)
            )));
        }
        Ok(ColSplit {
            layers,
            part,
            parts,
            tokens,
            width,
            pick,
            layer: 0,
            round: Round::Open,
            shared: false,
            x,
            mid: Vec::new(),
            packed: None,
        })
    }

    /// The most parts a pass cut by columns ([`Encoder::split_cols`]) takes: each part needs
    /// a run of whole heads that is also whole panels of the packed GEMM (ViT-B/32: 12), and
    /// a panel of the MLP's hidden layer. Without layers, any number.
    pub fn column_parts(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                let heads = l.self_attn.num_heads.max(1);
                let [width, _] = l.self_attn.q_proj.weight.dims();
                let [_, inner] = l.mlp.fc1.weight.dims();
                let head_runs = width.div_ceil(lcm((width / heads).max(1), gemm::NR));
                head_runs.min(inner.div_ceil(gemm::NR))
            })
            .min()
            .unwrap_or(usize::MAX)
    }
}

/// The attention's columns are cut in runs of whole heads that are also whole panels of the
/// packed GEMM.
fn head_unit(layer: &HostLayer) -> usize {
    lcm(layer.head_dim(), gemm::NR)
}

impl ColSplit {
    /// Whether every layer has run.
    pub fn done(&self) -> bool {
        self.round == Round::Done
    }

    /// Which part of the pass this is (`0..parts`).
    pub fn part(&self) -> usize {
        self.part
    }

    /// Rounds of [`ColSplit::share`] and [`ColSplit::gather`] in the whole pass.
    pub fn rounds(&self) -> usize {
        1 + 4 * self.layers.len()
    }

    /// Whether the current layer is the last: its queries, and everything after them, are
    /// the pooled row's alone.
    fn last(&self) -> bool {
        self.layer + 1 == self.layers.len()
    }

    /// Query rows of the current layer.
    fn queries(&self) -> usize {
        if self.last() { 1 } else { self.tokens }
    }

    /// The columns of the current round's product and the runs they are cut in (the open
    /// round swaps token rows, not columns).
    fn product_cols(&self) -> (usize, usize) {
        match (self.round, self.layers.get(self.layer)) {
            (Round::Heads, Some(l)) => (self.width, head_unit(l)),
            (Round::Up, Some(l)) => (l.w1.dims()[1], gemm::NR),
            _ => (self.width, gemm::NR),
        }
    }

    /// Part `p`'s columns of the current round's swap.
    fn cut(&self, p: usize) -> Range<usize> {
        let (n, unit) = self.product_cols();
        part_cols(n, unit, p, self.parts)
    }

    /// The residual rows the current layer's output adds to: every row, or the pooled one's
    /// alone on the last layer.
    fn residual(&self) -> &[f32] {
        if self.last() {
            &self.x[self.pick * self.width..][..self.width]
        } else {
            &self.x
        }
    }

    /// This part's share of the current round, for every part's [`ColSplit::gather`]:
    /// [rows, columns] row-major (module docs).
    pub fn share(&mut self) -> Result<Vec<f32>> {
        if self.shared {
            return Err(Error::Invalid(
                "this round's share was already given".into(),
            ));
        }
        let own = self.cut(self.part);
        let w = self.width;
        let out = match self.round {
            Round::Done => return Err(Error::Invalid("the split pass has run every layer".into())),
            Round::Open => self.x.clone(),
            Round::Heads => {
                let l = &self.layers[self.layer];
                let rows = l.norm1.rows(&self.x, self.tokens);
                let picked = self
                    .last()
                    .then(|| l.norm1.rows(&self.x[self.pick * w..][..w], 1));
                let q = l.project(Q, picked.as_ref().unwrap_or(&rows), own.clone());
                let k = l.project(K, &rows, own.clone());
                let v = l.project(V, &rows, own);
                let shape = Heads {
                    batch: 1,
                    keys: self.tokens,
                    queries: self.queries(),
                    head_dim: l.head_dim(),
                };
                gemm::attend(&q, &k, &v, shape, l.scale(), |_, _, _| None)
            }
            Round::Out => {
                let l = &self.layers[self.layer];
                let ctx = self.packed.as_ref().expect("the heads' output was swapped");
                let id = gemm::Activation::Identity;
                columns(ctx, &l.attn[OUT], own, id, Some(self.residual()))
            }
            Round::Up => {
                let l = &self.layers[self.layer];
                let rows = l.norm2.rows(&self.mid, self.queries());
                columns(&rows, &l.w1, own, gemm::Activation::QuickGelu, None)
            }
            Round::Down => {
                let l = &self.layers[self.layer];
                let hidden = self.packed.as_ref().expect("the hidden layer was swapped");
                let id = gemm::Activation::Identity;
                columns(hidden, &l.w2, own, id, Some(&self.mid))
            }
        };
        self.shared = true;
        Ok(out)
    }

    /// Takes every part's [`ColSplit::share`] of the current round, in part order, and
    /// moves to the next round.
    pub fn gather(&mut self, shares: &[&[f32]]) -> Result<()> {
        if self.round == Round::Done {
            return Err(Error::Invalid("the split pass has run every layer".into()));
        }
        if !self.shared {
            return Err(Error::Invalid(
                "gather needs this part's share first".into(),
            ));
        }
        if shares.len() != self.parts {
            return Err(Error::Invalid(format!(
                "shares of {} parts; the pass has {}",
                shares.len(),
                self.parts
            )));
        }
        let (m, w) = (self.queries(), self.width);
        for (p, share) in shares.iter().enumerate() {
            let want = match self.round {
                Round::Open => part_rows(self.tokens, p, self.parts).len() * w,
                _ => m * self.cut(p).len(),
            };
            if share.len() != want {
                return Err(Error::Invalid(format!(
                    "part {p}'s share holds {} values, not {want}",
                    share.len()
                )));
            }
        }
        self.round = match self.round {
            Round::Open => {
                self.x = shares.concat();
                // Without layers the rows swapped are the output.
                if self.layers.is_empty() {
                    Round::Done
                } else {
                    Round::Heads
                }
            }
            Round::Heads | Round::Up => {
                let rows = RowsWriter::new(m, self.product_cols().0);
                for (p, share) in shares.iter().enumerate() {
                    rows.write(self.cut(p), share);
                }
                self.packed = Some(rows.into_rows());
                if self.round == Round::Heads {
                    Round::Out
                } else {
                    Round::Down
                }
            }
            Round::Out => {
                self.packed = None;
                self.mid = join_cols(shares, m, w, |p| self.cut(p));
                Round::Up
            }
            Round::Down => {
                self.packed = None;
                self.x = join_cols(shares, m, w, |p| self.cut(p));
                self.mid = Vec::new();
                self.layer += 1;
                if self.layer == self.layers.len() {
                    Round::Done
                } else {
                    Round::Heads
                }
            }
            Round::Done => unreachable!("refused above"),
        };
        self.shared = false;
        Ok(())
    }

    /// The pooled token's final row (`[width]`) once every layer has run, on every part;
    /// `None` before.
    pub fn output(&self) -> Option<&[f32]> {
        if !self.done() {
            return None;
        }
        // With no layers the open round's rows are the output, all of them.
        Some(if self.layers.is_empty() {
            &self.x[self.pick * self.width..][..self.width]
        } else {
            &self.x[..]
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::super::{EncoderConfig, Pick};
    use super::*;
    use crate::clip::config::Activation;
    use crate::clip::packed;

    /// A quick_gelu encoder on the CPU backend, or `None` where the packed path does not run
    /// (on x86_64 it must: every machine this project runs on has AVX2 and FMA).
    fn encoder(
        width: usize,
        intermediate: usize,
        layers: usize,
        heads: usize,
    ) -> Option<(Encoder, Device)> {
        let device = Device::flex();
        if !packed::enabled(&device) {
            #[cfg(target_arch = "x86_64")]
            panic!("the packed path runs on x86_64");
            #[cfg(not(target_arch = "x86_64"))]
            return None;
        }
        let enc = EncoderConfig {
            width,
            intermediate,
            layers,
            heads,
            act: Activation::QuickGelu,
            eps: 1e-5,
        }
        .init(&device);
        Some((enc, device))
    }

    #[test]
    fn column_cuts_cover_the_columns_in_runs() {
        for (n, unit) in [
            (768_usize, 64_usize),
            (768, 16),
            (3072, 16),
            (40, 16),
            (64, 64),
        ] {
            for parts in 1..=n.div_ceil(unit).min(7) {
                let all: Vec<_> = (0..parts)
                    .flat_map(|p| part_cols(n, unit, p, parts))
                    .collect();
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "{n} by {unit} in {parts}");
                for p in 0..parts {
                    let c = part_cols(n, unit, p, parts);
                    assert_eq!(c.start % unit, 0);
                    assert!(!c.is_empty());
                }
            }
        }
    }

    /// Runs the parts in step, as the page's workers do; returns every part's output.
    fn run(enc: &Encoder, x: &Tensor<3>, pick: usize, parts: usize) -> Vec<Vec<f32>> {
        let [_, t, w] = x.dims();
        let mut split: Vec<ColSplit> = (0..parts)
            .map(|p| {
                let own = x.clone().slice([0..1, part_rows(t, p, parts), 0..w]);
                enc.split_cols(own, t, pick, p, parts).unwrap()
            })
            .collect();
        let mut rounds = 0;
        while !split[0].done() {
            let shares: Vec<Vec<f32>> = split.iter_mut().map(|s| s.share().unwrap()).collect();
            let refs: Vec<&[f32]> = shares.iter().map(Vec::as_slice).collect();
            for s in &mut split {
                s.gather(&refs).unwrap();
            }
            rounds += 1;
        }
        assert_eq!(rounds, split[0].rounds());
        split.iter().map(|s| s.output().unwrap().to_vec()).collect()
    }

    /// Split into 1, 2, 3 and 4 parts (up to one per head), every part ends with the pooled
    /// pass's row bit for bit, for the first token and one inside a later part (ViT-B/32's
    /// 50 tokens and 64-value heads, fewer and narrower layers to stay quick).
    #[test]
    fn column_split_pass_equals_the_pooled_pass_bit_for_bit() {
        let (t, width) = (50, 256);
        let Some((enc, device)) = encoder(width, 4 * width, 3, 4) else {
            return;
        };
        let x = Tensor::<3>::random([1, t, width], Distribution::Normal(0.0, 1.0), &device);
        for pick in [0, 37] {
            let whole = enc.forward_pooled(x.clone(), None, &Pick::position(pick, 1, t, &device));
            let whole: Vec<f32> = whole.into_data().try_to_vec().unwrap();
            for parts in [1, 2, 3, 4] {
                for (p, got) in run(&enc, &x, pick, parts).into_iter().enumerate() {
                    assert_eq!(got, whole, "{parts} parts, part {p}, token {pick}");
                }
            }
        }
        // More parts than runs of whole heads is refused.
        let own = x.clone().slice([0..1, part_rows(t, 0, 5), 0..width]);
        let err = enc.split_cols(own, t, 0, 0, 5).err().expect("refused");
        assert!(err.to_string().contains("4 heads"), "{err}");
    }

    /// Shapes whose cuts do not divide evenly: 3 heads of 16 values (runs of one head), an
    /// MLP of 200 (the last part's fc1 columns end in a part-filled panel), 2 and 3 parts.
    #[test]
    fn uneven_cuts_equal_the_pooled_pass_bit_for_bit() {
        let (t, width) = (11, 48);
        let Some((enc, device)) = encoder(width, 200, 2, 3) else {
            return;
        };
        assert_eq!(enc.column_parts(), 3);
        let x = Tensor::<3>::random([1, t, width], Distribution::Normal(0.0, 1.0), &device);
        let pick = 6;
        let whole = enc.forward_pooled(x.clone(), None, &Pick::position(pick, 1, t, &device));
        let whole: Vec<f32> = whole.into_data().try_to_vec().unwrap();
        for parts in [2, 3] {
            for (p, got) in run(&enc, &x, pick, parts).into_iter().enumerate() {
                assert_eq!(got, whole, "{parts} parts, part {p}");
            }
        }
    }

    #[test]
    fn misuse_is_an_error() {
        let Some((enc, device)) = encoder(32, 64, 1, 2) else {
            return;
        };
        let x = Tensor::<3>::random([1, 4, 32], Distribution::Normal(0.0, 1.0), &device);
        let half = |p| x.clone().slice([0..1, part_rows(4, p, 2), 0..32]);
        assert!(
            enc.split_cols(x.clone(), 4, 0, 0, 2).is_err(),
            "all rows for a part of two"
        );
        assert!(
            enc.split_cols(half(0), 4, 4, 0, 2).is_err(),
            "position past the tokens"
        );
        let mut s = enc.split_cols(half(0), 4, 0, 0, 2).unwrap();
        assert!(s.gather(&[&[], &[]]).is_err(), "gather before share");
        let own = s.share().unwrap();
        assert!(s.share().is_err(), "share twice");
        assert!(s.gather(&[&own]).is_err(), "one part's share for two parts");
        assert!(s.gather(&[&own, &own[1..]]).is_err(), "a short share");
        s.gather(&[&own, &own]).unwrap();
        assert!(!s.done() && s.output().is_none());
    }
}
