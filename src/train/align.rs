//! The post-hoc matching of a split dictionary's latents across modalities (Lee et al.
//! 2026, arXiv 2606.29888, §4.3), run once after training.

use burn::tensor::{Device, Tensor};
use serde::Serialize;

use crate::base::host::host_vec;
use crate::base::{Modality, Pairs};
use crate::dict::Dictionary;
use crate::error::{Error, Result};

/// Pairs the post-hoc alignment of split dictionaries reads (Lee et al. 2026 use up to
/// 50k paired training samples).
pub const ALIGN_PAIRS: usize = 50_000;
/// Pairs encoded per pass during the alignment.
const ALIGN_CHUNK: usize = 4096;

/// How a split dictionary's latents were matched.
#[derive(Debug, Clone, Serialize)]
pub struct Alignment {
    /// Pairs read.
    pub pairs: usize,
    /// Slots whose image and text latents both fired.
    pub matched_alive: usize,
    /// Mean Pearson correlation of those slots' two latents.
    pub mean_correlation: f64,
}

/// The post-hoc alignment of a split dictionary (Lee et al. 2026, arXiv 2606.29888,
/// §4.3; their `hungarian.py`): C[i, j] is the Pearson correlation of image latent i
/// and text latent j over the first [`ALIGN_PAIRS`] pairs; latents that never fired (or
/// never vary) are excluded by a cost of 1e9; the assignment maximising Σ_i C[i, π(i)]
/// reorders the text latents so that text latent i is old latent π(i). Other kinds are
/// returned unchanged.
pub fn align_split(
    dict: Dictionary,
    pairs: &Pairs,
    device: &Device,
) -> Result<(Dictionary, Option<Alignment>)> {
    let Dictionary::Split(split) = dict else {
        return Ok((dict, None));
    };
    let n = pairs.n.min(ALIGN_PAIRS);
    if n < 2 {
        return Err(Error::Invalid(
            "aligning a split dictionary needs at least 2 pairs".into(),
        ));
    }
    let k = split.image.w_dec.dims()[0];
    let (mut sa, mut sb, mut saa, mut sbb) = (None, None, None, None);
    let mut sab: Option<Tensor<2>> = None;
    let acc = |t: &mut Option<Tensor<1>>, x: Tensor<1>| {
        *t = Some(match t.take() {
            Some(a) => a + x,
            None => x,
        })
    };
    for start in (0..n).step_by(ALIGN_CHUNK) {
        let idx: Vec<usize> = (start..(start + ALIGN_CHUNK).min(n)).collect();
        let za = split.encode(pairs.rows(true, &idx, device), Modality::Image);
        let zb = split.encode(pairs.rows(false, &idx, device), Modality::Text);
        acc(&mut sa, za.clone().sum_dim(0).reshape([k]));
        acc(&mut sb, zb.clone().sum_dim(0).reshape([k]));
        acc(&mut saa, za.clone().square().sum_dim(0).reshape([k]));
        acc(&mut sbb, zb.clone().square().sum_dim(0).reshape([k]));
        let ab = za.transpose().matmul(zb);
        sab = Some(match sab {
            Some(s) => s + ab,
            None => ab,
        });
    }
    let read = |t: Option<Tensor<1>>| host_vec(t.expect("at least one chunk"));
    let (sa, sb, saa, sbb) = (read(sa)?, read(sb)?, read(saa)?, read(sbb)?);
    let sab = host_vec(sab.expect("at least one chunk"))?;
    let nf = n as f64;
    let stats = |s: &[f32], ss: &[f32]| -> Vec<(f64, f64)> {
        s.iter()
            .zip(ss)
            .map(|(s, ss)| {
                let mean = *s as f64 / nf;
                (mean, (*ss as f64 / nf - mean * mean).max(0.0).sqrt())
            })
            .collect()
    };
    let (a, b) = (stats(&sa, &saa), stats(&sb, &sbb));
    // Below this standard deviation a latent is silent (it never fired, or fires alike on
    // every pair) and has no correlation to match on.
    const SILENT: f64 = 1e-12;
    const EXCLUDED: f64 = 1e9;
    let mut corr = vec![f64::NAN; k * k];
    let mut cost = vec![EXCLUDED; k * k];
    for i in 0..k {
        for j in 0..k {
            if a[i].1 > SILENT && b[j].1 > SILENT {
                let c = (sab[i * k + j] as f64 / nf - a[i].0 * b[j].0) / (a[i].1 * b[j].1);
                corr[i * k + j] = c;
                cost[i * k + j] = -c;
            }
        }
    }
    let perm = crate::base::assignment::min_cost_assignment(&cost, k);
    let matched: Vec<f64> = (0..k)
        .map(|i| corr[i * k + perm[i]])
        .filter(|c| c.is_finite())
        .collect();
    let alignment = Alignment {
        pairs: n,
        matched_alive: matched.len(),
        mean_correlation: if matched.is_empty() {
            f64::NAN
        } else {
            matched.iter().sum::<f64>() / matched.len() as f64
        },
    };
    Ok((
        Dictionary::Split(split.permute_text(&perm)),
        Some(alignment),
    ))
}
