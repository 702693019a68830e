//! Feature classes from a dictionary's structure instead of MDS (issue 15, item 3), so the
//! two readings can be compared on the same bundle.
//!
//! The Iso-Energy rule (Dhimoïla et al. 2026, arXiv 2602.06218; the IsoEnergy code's
//! `measure_everything`): a feature's energy in a modality is its mean squared
//! activation there, μ_k = E_image[z_k^2] / (E_image[z_k^2] + E_text[z_k^2]) on paired
//! data, and the feature is bimodal (CrossD) iff [`ENERGY_MARGIN`] <= μ_k <= 1 -
//! [`ENERGY_MARGIN`], image-only (ImgD) above and text-only (TextD) below. Features
//! without energy are Rare. Unlike MDS this weighs pairs by their activation, so a
//! feature that fires weakly on many texts and strongly on few images reads as ImgD.

use crate::analysis::mds::{FeatureClass, FeatureMds};

/// The IsoEnergy code's `modality_threshold` (0.05).
pub const ENERGY_MARGIN: f64 = 0.05;
/// Below this total energy a feature counts as dead (the IsoEnergy code's 1e-9).
pub const DEAD_ENERGY: f64 = 1e-9;

/// μ_k of every feature; `None` for dead features.
pub fn energy_share(features: &[FeatureMds]) -> Vec<Option<f64>> {
    features
        .iter()
        .map(|f| {
            let total = f.energy_image + f.energy_text;
            (total > DEAD_ENERGY).then(|| f.energy_image / total)
        })
        .collect()
}

/// The Iso-Energy class of every feature.
pub fn energy_classes(features: &[FeatureMds]) -> Vec<FeatureClass> {
    energy_share(features)
        .into_iter()
        .map(|mu| match mu {
            None => FeatureClass::Rare,
            Some(m) if m > 1.0 - ENERGY_MARGIN => FeatureClass::ImgD,
            Some(m) if m < ENERGY_MARGIN => FeatureClass::TextD,
            Some(_) => FeatureClass::CrossD,
        })
        .collect()
}

/// Counts of (row class, column class) over features, in [`FeatureClass::ALL`] order.
pub fn confusion(rows: &[FeatureClass], cols: &[FeatureClass]) -> [[usize; 4]; 4] {
    let mut m = [[0usize; 4]; 4];
    for (a, b) in rows.iter().zip(cols) {
        m[a.index()][b.index()] += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(ei: f64, et: f64) -> FeatureMds {
        FeatureMds {
            mds: None,
            support: 0,
            mean_image: 0.0,
            mean_text: 0.0,
            energy_image: ei,
            energy_text: et,
        }
    }

    #[test]
    fn energy_rule_by_hand() {
        let feats = [
            f(1.0, 0.0),
            f(0.0, 2.0),
            f(1.0, 1.0),
            f(0.96, 0.04),
            f(0.94, 0.06),
            f(0.0, 0.0),
        ];
        use FeatureClass::*;
        assert_eq!(
            energy_classes(&feats),
            vec![ImgD, TextD, CrossD, ImgD, CrossD, Rare]
        );
        let m = confusion(&[ImgD, ImgD, TextD], &[ImgD, CrossD, TextD]);
        assert_eq!(m[0][0], 1);
        assert_eq!(m[0][2], 1);
        assert_eq!(m[1][1], 1);
    }
}
