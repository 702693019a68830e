//! Attribute / bias probe (SPEC §4.1): zero-shot classify groups of images with one prompt
//! per class, from the CLIP embedding, from the dictionary's reconstruction, and from the
//! reconstruction with ImgD, TextD or CrossD features removed; accuracy per group with a
//! bootstrap confidence interval, and the single features whose removal moves each group
//! most.

use serde::{Deserialize, Serialize};

use super::{HostDecoder, margin, zero_shot};
use crate::analysis::mds::FeatureClass;
use crate::base::SplitMix;
use crate::error::{Error, Result};
use crate::inspect::Modality;

/// The paper's prompts (SPEC §4.1), used when none are given for two groups.
pub const DEFAULT_PROMPTS: [&str; 2] = ["a photo of a man", "a photo of a woman"];
/// Bootstrap resamples for the confidence intervals.
pub const DEFAULT_BOOTSTRAP: usize = 1000;
/// Features listed per group as moving it most.
pub const DEFAULT_TOP_FEATURES: usize = 5;

/// Probe settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Bootstrap resamples (95% percentile intervals).
    pub bootstrap: usize,
    /// Features listed per group.
    pub top_features: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            bootstrap: DEFAULT_BOOTSTRAP,
            top_features: DEFAULT_TOP_FEATURES,
            seed: 0,
        }
    }
}

/// One group of images, all expected to match prompt `expected`.
#[derive(Debug, Clone)]
pub struct Group {
    /// Shown name (e.g. the folder).
    pub name: String,
    /// Index of the prompt this group should be classified as.
    pub expected: usize,
    /// L2-normalised image embeddings.
    pub embeddings: Vec<Vec<f32>>,
    /// Their dictionary activations.
    pub activations: Vec<Vec<f32>>,
}

/// Accuracy of one way of classifying one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accuracy {
    /// "clip", "reconstruction", "without ImgD", "without TextD", "without CrossD".
    pub variant: String,
    /// Images classified as the group's prompt.
    pub correct: usize,
    /// Images.
    pub total: usize,
    /// correct / total.
    pub accuracy: f64,
    /// 95% bootstrap percentile interval of the accuracy.
    pub ci95: [f64; 2],
}

/// A feature whose removal moves a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mover {
    /// Feature id.
    pub feature: usize,
    /// Its class.
    pub class: FeatureClass,
    /// Mean change of the margin (own prompt minus best other) over the group when the
    /// feature alone is removed; negative = removal hurts the group's classification.
    pub delta_margin: f64,
    /// Images of the group on which the feature is active.
    pub active_on: usize,
}

/// Results for one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// Expected prompt.
    pub expected: String,
    /// One entry per variant, in the order of [`VARIANTS`].
    pub accuracy: Vec<Accuracy>,
    /// Features whose removal moves the group most (by |delta_margin|).
    pub movers: Vec<Mover>,
}

/// The whole probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The prompts, one per class.
    pub prompts: Vec<String>,
    /// Per group.
    pub groups: Vec<GroupReport>,
    /// Settings.
    pub config: ProbeConfig,
}

/// Names of the classification variants.
pub const VARIANTS: [&str; 5] = [
    "clip",
    "reconstruction",
    "without ImgD",
    "without TextD",
    "without CrossD",
];

/// Bootstrap 95% percentile interval of the mean of 0/1 outcomes.
pub fn bootstrap_ci(outcomes: &[bool], resamples: usize, seed: u64) -> [f64; 2] {
    let n = outcomes.len();
    if n == 0 || resamples == 0 {
        return [f64::NAN, f64::NAN];
    }
    let mut rng = SplitMix(seed ^ 0xB007_5772_AB00_0000);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).filter(|_| outcomes[rng.below(n)]).count() as f64 / n as f64)
        .collect();
    means.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    [at(0.025), at(0.975)]
}

/// Runs the probe. `prompts` are the prompts' L2-normalised text embeddings.
pub fn probe(
    decoder: &HostDecoder,
    prompt_texts: &[String],
    prompts: &[Vec<f32>],
    groups: &[Group],
    config: &ProbeConfig,
) -> Result<ProbeReport> {
    if prompts.len() < 2 || prompts.len() != prompt_texts.len() {
        return Err(Error::Invalid(
            "the probe needs at least two prompts (one per class)".into(),
        ));
    }
    let classes = &decoder.classes;
    let mut reports = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        if g.expected >= prompts.len() {
            return Err(Error::Invalid(format!(
                "group {:?} expects prompt {} of {}",
                g.name,
                g.expected,
                prompts.len()
            )));
        }
        if g.embeddings.is_empty() || g.embeddings.len() != g.activations.len() {
            return Err(Error::Invalid(format!("group {:?} has no images", g.name)));
        }
        let removed = |v: usize| match v {
            2 => Some(FeatureClass::ImgD),
            3 => Some(FeatureClass::TextD),
            4 => Some(FeatureClass::CrossD),
            _ => None,
        };
        let mut outcomes = vec![Vec::new(); VARIANTS.len()];
        // Sum over images of the margin change when one feature is removed.
        let mut delta = vec![0f64; classes.len()];
        let mut active = vec![0usize; classes.len()];
        for (x, z) in g.embeddings.iter().zip(&g.activations) {
            for (v, out) in outcomes.iter_mut().enumerate() {
                let e = if v == 0 {
                    x.clone()
                } else {
                    let drop = removed(v);
                    decoder.reconstruct(z, Modality::Image, |k| Some(classes[k]) != drop)
                };
                out.push(zero_shot(&e, prompts) == g.expected);
            }
            let full = decoder.reconstruct(z, Modality::Image, |_| true);
            let base = margin(&full, prompts, g.expected);
            for (k, &zk) in z.iter().enumerate() {
                if zk > 0.0 {
                    let without = decoder.reconstruct(z, Modality::Image, |j| j != k);
                    delta[k] += (margin(&without, prompts, g.expected) - base) as f64;
                    active[k] += 1;
                }
            }
        }
        let n = g.embeddings.len();
        let accuracy = outcomes
            .iter()
            .enumerate()
            .map(|(v, o)| {
                let correct = o.iter().filter(|b| **b).count();
                Accuracy {
                    variant: VARIANTS[v].to_string(),
                    correct,
                    total: n,
                    accuracy: correct as f64 / n as f64,
                    ci95: bootstrap_ci(o, config.bootstrap, config.seed ^ (gi * 31 + v) as u64),
                }
            })
            .collect();
        let mut movers: Vec<Mover> = (0..classes.len())
            .filter(|k| active[*k] > 0)
            .map(|k| Mover {
                feature: k,
                class: classes[k],
                delta_margin: delta[k] / n as f64,
                active_on: active[k],
            })
            .collect();
        movers.sort_by(|a, b| {
            b.delta_margin
                .abs()
                .partial_cmp(&a.delta_margin.abs())
                .unwrap()
        });
        movers.truncate(config.top_features);
        reports.push(GroupReport {
            name: g.name.clone(),
            expected: prompt_texts[g.expected].clone(),
            accuracy,
            movers,
        });
    }
    Ok(ProbeReport {
        prompts: prompt_texts.to_vec(),
        groups: reports,
        config: config.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_degenerate_for_constant_outcomes() {
        let all = vec![true; 20];
        assert_eq!(bootstrap_ci(&all, 200, 1), [1.0, 1.0]);
        let half: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        let [lo, hi] = bootstrap_ci(&half, 1000, 1);
        // Binomial sd of the mean = 0.05: the 95% interval is about 0.40..0.60.
        assert!(
            lo > 0.35 && lo < 0.45 && hi > 0.55 && hi < 0.65,
            "{lo} {hi}"
        );
        assert!(bootstrap_ci(&[], 10, 1)[0].is_nan());
    }
}
