//! Modality Dominance Score and feature classes (SPEC §2).
//!
//! For feature k and pairs i with a_ik + b_ik > eps (a: image activation, b: text
//! activation), MDS_k = mean_i a_ik / (a_ik + b_ik). Features supported by fewer than
//! `min_support` pairs are "rare" and not classified. Classes: rule `zscore` (ImgD above
//! mu + sigma, TextD below mu - sigma, CrossD between; mu, sigma over classified features)
//! or rule `fixed` (ImgD > 0.75, TextD < 0.25 by default).

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::base::host::host_vec;
use crate::error::{Error, Result};

/// Default activation floor below which a pair does not support a feature.
pub const DEFAULT_EPS: f64 = 1e-6;
/// Default minimum support (SPEC §2).
pub const DEFAULT_MIN_SUPPORT: u64 = 10;
/// Default thresholds of the `fixed` rule (SPEC §2).
pub const DEFAULT_FIXED: (f64, f64) = (0.75, 0.25);

/// A feature's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeatureClass {
    /// Vision-dominant.
    ImgD,
    /// Language-dominant.
    TextD,
    /// Cross-modal.
    CrossD,
    /// Too little support to classify.
    Rare,
}

impl FeatureClass {
    /// Every class, in the order of `class_counts` and of per-class arrays everywhere
    /// (ImgD, TextD, CrossD, Rare).
    pub const ALL: [FeatureClass; 4] = [
        FeatureClass::ImgD,
        FeatureClass::TextD,
        FeatureClass::CrossD,
        FeatureClass::Rare,
    ];

    /// Position in [`FeatureClass::ALL`].
    pub fn index(self) -> usize {
        match self {
            FeatureClass::ImgD => 0,
            FeatureClass::TextD => 1,
            FeatureClass::CrossD => 2,
            FeatureClass::Rare => 3,
        }
    }
}

/// Number of features per class, in [`FeatureClass::ALL`] order.
pub fn class_counts(classes: &[FeatureClass]) -> [usize; 4] {
    let mut counts = [0usize; 4];
    for c in classes {
        counts[c.index()] += 1;
    }
    counts
}

/// How classes are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ClassRule {
    /// mu ± sigma of the classified features' MDS.
    Zscore,
    /// Fixed thresholds.
    Fixed {
        /// ImgD when MDS is above this.
        img: f64,
        /// TextD when MDS is below this.
        text: f64,
    },
}

/// The thresholds a rule produced, stored with every result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// The rule.
    pub rule: ClassRule,
    /// ImgD above this.
    pub img: f64,
    /// TextD below this.
    pub text: f64,
    /// Mean MDS of classified features.
    pub mean: f64,
    /// Standard deviation of MDS of classified features.
    pub std: f64,
}

/// Per-feature MDS and support.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMds {
    /// MDS in [0, 1]; `None` when no pair supports the feature.
    pub mds: Option<f64>,
    /// Pairs with a + b > eps.
    pub support: u64,
    /// Mean image activation over all pairs.
    pub mean_image: f64,
    /// Mean text activation over all pairs.
    pub mean_text: f64,
    /// Mean squared image activation over all pairs (the Iso-Energy "energy").
    #[serde(default)]
    pub energy_image: f64,
    /// Mean squared text activation over all pairs.
    #[serde(default)]
    pub energy_text: f64,
}

/// Streams paired activation batches and accumulates MDS sums on the device
/// ([`Self::add`]) or, for activations already on the host, there ([`Self::add_host`]).
pub struct MdsAccumulator {
    eps: f64,
    pairs: u64,
    ratio: Option<Tensor<1>>,
    support: Option<Tensor<1>>,
    sum_a: Option<Tensor<1>>,
    sum_b: Option<Tensor<1>>,
    sum_a2: Option<Tensor<1>>,
    sum_b2: Option<Tensor<1>>,
    /// Per feature, the sums of the batches added on the host.
    host: Vec<HostSums>,
}

/// One feature's sums over the pairs added on the host (f64: batches add up exactly enough
/// whatever their number).
#[derive(Debug, Clone, Copy, Default)]
struct HostSums {
    ratio: f64,
    support: u64,
    a: f64,
    b: f64,
    a2: f64,
    b2: f64,
}

fn add(acc: &mut Option<Tensor<1>>, x: Tensor<1>) {
    *acc = Some(match acc.take() {
        Some(a) => a + x,
        None => x,
    });
}

impl MdsAccumulator {
    /// A new accumulator with activation floor `eps`.
    pub fn new(eps: f64) -> Self {
        Self {
            eps,
            pairs: 0,
            ratio: None,
            support: None,
            sum_a: None,
            sum_b: None,
            sum_a2: None,
            sum_b2: None,
            host: Vec::new(),
        }
    }

    /// Adds a batch held on the host: `a` image and `b` text activations of the same pairs,
    /// both [pairs, K] row-major and non-negative. One pass over both, the features shared
    /// out over the cores; the same tests as [`Self::add`] in f32 (support where a + b >
    /// eps, the ratio a / max(a + b, eps)), summed in f64. On the CPU backend this replaces
    /// a dozen [pairs, K] tensor passes (sum, mask, ratio, squares) per batch.
    pub fn add_host(&mut self, a: &[f32], b: &[f32], k: usize) -> Result<()> {
        if a.len() != b.len() || k == 0 || !a.len().is_multiple_of(k) {
            return Err(Error::Invalid(format!(
                "MDS batch of {} and {} values is not two [pairs, {k}] matrices",
                a.len(),
                b.len()
            )));
        }
        if self.host.is_empty() {
            self.host = vec![HostSums::default(); k];
        } else if self.host.len() != k {
            return Err(Error::Invalid(format!(
                "MDS batch of {k} features after batches of {}",
                self.host.len()
            )));
        }
        let eps = self.eps as f32;
        crate::base::par::par_chunks_mut(&mut self.host, |first, sums| {
            let cols = first..first + sums.len();
            for (ra, rb) in a.chunks(k).zip(b.chunks(k)) {
                let (ra, rb) = (&ra[cols.clone()], &rb[cols.clone()]);
                for ((acc, &x), &y) in sums.iter_mut().zip(ra).zip(rb) {
                    let s = x + y;
                    if s > eps {
                        acc.ratio += (x / s.max(eps)) as f64;
                        acc.support += 1;
                    }
                    acc.a += x as f64;
                    acc.b += y as f64;
                    acc.a2 += (x * x) as f64;
                    acc.b2 += (y * y) as f64;
                }
            }
        });
        self.pairs += (a.len() / k) as u64;
        Ok(())
    }

    /// Adds a batch: `a` image activations, `b` text activations of the same pairs, both
    /// [pairs, K] and non-negative.
    pub fn add(&mut self, a: Tensor<2>, b: Tensor<2>) {
        let [n, k] = a.dims();
        let s = a.clone() + b.clone();
        let supported = s.clone().greater_elem(self.eps);
        let ratio =
            (a.clone() / s.clamp_min(self.eps)).mask_fill(supported.clone().bool_not(), 0.0);
        add(&mut self.ratio, ratio.sum_dim(0).reshape([k]));
        add(&mut self.support, supported.float().sum_dim(0).reshape([k]));
        add(&mut self.sum_a2, a.clone().square().sum_dim(0).reshape([k]));
        add(&mut self.sum_b2, b.clone().square().sum_dim(0).reshape([k]));
        add(&mut self.sum_a, a.sum_dim(0).reshape([k]));
        add(&mut self.sum_b, b.sum_dim(0).reshape([k]));
        self.pairs += n as u64;
    }

    /// Reads the sums back and computes every feature's MDS.
    pub fn finish(self) -> Result<Vec<FeatureMds>> {
        let mut sums = self.host;
        if self.ratio.is_some() {
            let read = |t: Option<Tensor<1>>| -> Result<Vec<f32>> {
                host_vec(t.ok_or_else(|| Error::Invalid("MDS sums missing".into()))?)
            };
            let (ratio, support, a, b) = (
                read(self.ratio)?,
                read(self.support)?,
                read(self.sum_a)?,
                read(self.sum_b)?,
            );
            let (a2, b2) = (read(self.sum_a2)?, read(self.sum_b2)?);
            if sums.is_empty() {
                sums = vec![HostSums::default(); ratio.len()];
            }
            if sums.len() != ratio.len() {
                return Err(Error::Invalid("MDS batches of different widths".into()));
            }
            for (f, acc) in sums.iter_mut().enumerate() {
                acc.ratio += ratio[f] as f64;
                acc.support += support[f].round() as u64;
                acc.a += a[f] as f64;
                acc.b += b[f] as f64;
                acc.a2 += a2[f] as f64;
                acc.b2 += b2[f] as f64;
            }
        }
        if self.pairs == 0 {
            return Err(Error::Invalid("no pairs were given to the MDS".into()));
        }
        let n = self.pairs as f64;
        Ok(sums
            .iter()
            .map(|acc| FeatureMds {
                mds: (acc.support > 0).then(|| (acc.ratio / acc.support as f64).clamp(0.0, 1.0)),
                support: acc.support,
                mean_image: acc.a / n,
                mean_text: acc.b / n,
                energy_image: acc.a2 / n,
                energy_text: acc.b2 / n,
            })
            .collect())
    }
}

/// MDS from host activations ([pairs * K] row-major each), for small inputs and tests.
pub fn mds_of(a: &[f32], b: &[f32], k: usize, eps: f64) -> Vec<FeatureMds> {
    let n = a.len() / k.max(1);
    (0..k)
        .map(|f| {
            let (mut sum, mut support, mut sa, mut sb) = (0.0, 0u64, 0.0, 0.0);
            let (mut sa2, mut sb2) = (0.0, 0.0);
            for i in 0..n {
                let (x, y) = (a[i * k + f] as f64, b[i * k + f] as f64);
                sa += x;
                sb += y;
                sa2 += x * x;
                sb2 += y * y;
                if x + y > eps {
                    sum += x / (x + y);
                    support += 1;
                }
            }
            FeatureMds {
                mds: (support > 0).then(|| sum / support as f64),
                support,
                mean_image: sa / n.max(1) as f64,
                mean_text: sb / n.max(1) as f64,
                energy_image: sa2 / n.max(1) as f64,
                energy_text: sb2 / n.max(1) as f64,
            }
        })
        .collect()
}

/// Assigns classes. Returns the class of every feature and the thresholds used.
pub fn classify(
    features: &[FeatureMds],
    rule: ClassRule,
    min_support: u64,
) -> (Vec<FeatureClass>, Thresholds) {
    let scored: Vec<f64> = features
        .iter()
        .filter(|f| f.support >= min_support.max(1))
        .filter_map(|f| f.mds)
        .collect();
    let n = scored.len().max(1) as f64;
    let mean = scored.iter().sum::<f64>() / n;
    let std = (scored.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / n).sqrt();
    let (img, text) = match rule {
        ClassRule::Zscore => (mean + std, mean - std),
        ClassRule::Fixed { img, text } => (img, text),
    };
    let classes = features
        .iter()
        .map(|f| match f.mds {
            Some(m) if f.support >= min_support.max(1) => {
                if m > img {
                    FeatureClass::ImgD
                } else if m < text {
                    FeatureClass::TextD
                } else {
                    FeatureClass::CrossD
                }
            }
            _ => FeatureClass::Rare,
        })
        .collect();
    (
        classes,
        Thresholds {
            rule,
            img,
            text,
            mean,
            std,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host accumulator, the tensor one and `mds_of` agree on sparse activations in
    /// batches (a tiny a + b below eps included; enough features for several threads):
    /// support exactly, the rest to f32 rounding of the device's sums.
    #[test]
    fn host_and_device_sums_agree() {
        use burn::tensor::{Device, TensorData};
        let (n, k, batch) = (70, 150, 32);
        let mut rng = crate::base::SplitMix(3);
        let mut sparse = || -> Vec<f32> {
            (0..n * k)
                .map(|_| {
                    let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                    if u < 0.7 {
                        0.0
                    } else if u < 0.72 {
                        1e-8
                    } else {
                        u
                    }
                })
                .collect()
        };
        let (a, b) = (sparse(), sparse());
        let device = Device::flex();
        let (mut host, mut tensors) = (MdsAccumulator::new(1e-6), MdsAccumulator::new(1e-6));
        for (ca, cb) in a.chunks(batch * k).zip(b.chunks(batch * k)) {
            host.add_host(ca, cb, k).unwrap();
            let t = |v: &[f32]| {
                Tensor::<2>::from_data(TensorData::new(v.to_vec(), [v.len() / k, k]), &device)
            };
            tensors.add(t(ca), t(cb));
        }
        let (host, tensors) = (host.finish().unwrap(), tensors.finish().unwrap());
        let reference = mds_of(&a, &b, k, 1e-6);
        for f in 0..k {
            for other in [&tensors[f], &reference[f]] {
                let (x, y) = (&host[f], other);
                assert_eq!(x.support, y.support, "feature {f}");
                // The tensor path sums 70 values a feature in f32: at most 70 x 2^-24 (4e-6)
                // relative; `mds_of` and the host path sum in f64.
                let close = |p: f64, q: f64| (p - q).abs() <= 1e-5 * (1.0 + q.abs());
                assert!(
                    close(x.mds.unwrap_or(-1.0), y.mds.unwrap_or(-1.0)),
                    "{f}: {x:?} {y:?}"
                );
                assert!(close(x.mean_image, y.mean_image) && close(x.mean_text, y.mean_text));
                assert!(close(x.energy_image, y.energy_image), "{f}: {x:?} {y:?}");
                assert!(close(x.energy_text, y.energy_text), "{f}: {x:?} {y:?}");
            }
        }
        assert!(host.iter().any(|m| m.support > 0));
        // Misshapen batches are refused.
        let mut acc = MdsAccumulator::new(1e-6);
        assert!(acc.add_host(&a[..10], &b[..12], 2).is_err());
        assert!(acc.add_host(&a[..10], &b[..10], 3).is_err());
        assert!(MdsAccumulator::new(1e-6).finish().is_err());
    }

    #[test]
    fn hand_computed_mds() {
        // 3 pairs, 4 features. f0: image only; f1: text only; f2: equal; f3: never fires.
        let a = [1.0, 0.0, 2.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let b = [0.0, 3.0, 2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let m = mds_of(&a, &b, 4, 1e-6);
        assert_eq!(m[0].mds, Some(1.0));
        assert_eq!(m[0].support, 2);
        assert_eq!(m[1].mds, Some(0.0));
        assert_eq!(m[2].mds, Some(0.5));
        assert_eq!(m[3].mds, None);
        assert_eq!(m[3].support, 0);
        assert!((m[0].mean_image - 0.5).abs() < 1e-12);
        assert!((m[0].energy_image - 1.25 / 3.0).abs() < 1e-12);
        assert!((m[1].energy_text - 10.0 / 3.0).abs() < 1e-12);
        assert_eq!(m[3].energy_image, 0.0);
    }

    #[test]
    fn eps_excludes_tiny_activations() {
        let a = [1e-9f32, 0.3];
        let b = [0.0f32, 0.1];
        let m = mds_of(&a, &b, 1, 1e-6);
        assert_eq!(m[0].support, 1);
        assert!((m[0].mds.unwrap() - 0.75).abs() < 1e-6);
    }

    #[test]
    fn zscore_and_fixed_rules() {
        let f = |mds: f64, support| FeatureMds {
            mds: Some(mds),
            support,
            mean_image: 0.0,
            mean_text: 0.0,
            energy_image: 0.0,
            energy_text: 0.0,
        };
        let feats = vec![f(1.0, 20), f(0.0, 20), f(0.5, 20), f(0.5, 20), f(0.9, 3)];
        let (c, t) = classify(&feats, ClassRule::Zscore, 10);
        assert_eq!(
            c,
            vec![
                FeatureClass::ImgD,
                FeatureClass::TextD,
                FeatureClass::CrossD,
                FeatureClass::CrossD,
                FeatureClass::Rare
            ]
        );
        assert!((t.mean - 0.5).abs() < 1e-12);
        assert!((t.std - (0.125f64).sqrt()).abs() < 1e-12);
        // A tie at the threshold stays CrossD (strict inequalities).
        let (c, _) = classify(
            &feats,
            ClassRule::Fixed {
                img: 1.0,
                text: 0.0,
            },
            10,
        );
        assert_eq!(c[0], FeatureClass::CrossD);
        assert_eq!(c[1], FeatureClass::CrossD);
        let (c, _) = classify(
            &feats,
            ClassRule::Fixed {
                img: 0.75,
                text: 0.25,
            },
            1,
        );
        assert_eq!(c[4], FeatureClass::ImgD);
    }
}
