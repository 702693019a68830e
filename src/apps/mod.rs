//! The paper's three applications (SPEC §4): the attribute/bias probe ([`probe`]),
//! cross-modal adversarial examples and their defense ([`attack`]), and modality-specific
//! control of generation ([`control`]). They share host-side reconstruction with feature
//! classes switched off (the bundle's [`HostDecoder`]) and zero-shot classification.

pub mod attack;
pub mod control;
pub mod probe;

use crate::analysis::mds::FeatureClass;
pub use crate::inspect::HostDecoder;

/// The classes in the order every report lists them.
pub const CLASSES: [FeatureClass; 4] = [
    FeatureClass::ImgD,
    FeatureClass::TextD,
    FeatureClass::CrossD,
    FeatureClass::Rare,
];

/// Position of a class in [`CLASSES`].
pub fn class_index(c: FeatureClass) -> usize {
    match c {
        FeatureClass::ImgD => 0,
        FeatureClass::TextD => 1,
        FeatureClass::CrossD => 2,
        FeatureClass::Rare => 3,
    }
}

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Scales to unit L2 norm (zero stays zero).
pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Zero-shot prediction: the prompt embedding most similar to `x` (first on ties).
pub fn zero_shot(x: &[f32], prompts: &[Vec<f32>]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (j, t) in prompts.iter().enumerate() {
        let c = cosine(x, t);
        if c > best.1 {
            best = (j, c);
        }
    }
    best.0
}

/// Similarity to prompt `truth` minus the best other prompt's (> 0: classified right).
pub fn margin(x: &[f32], prompts: &[Vec<f32>], truth: usize) -> f32 {
    let own = cosine(x, &prompts[truth]);
    let other = prompts
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != truth)
        .map(|(_, t)| cosine(x, t))
        .fold(f32::NEG_INFINITY, f32::max);
    own - other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_shot_and_margin_by_hand() {
        let prompts = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, 0.0]];
        assert_eq!(zero_shot(&[0.9, 0.1], &prompts), 0);
        assert_eq!(zero_shot(&[0.1, 0.9], &prompts), 1);
        // cos with [1,0] = 0.6, with [0,1] = 0.8: margin of class 0 is -0.2.
        assert!((margin(&[0.6, 0.8], &prompts, 0) + 0.2).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(normalize(vec![3.0, 4.0]), vec![0.6, 0.8]);
    }
}
