//! The paper's three applications (SPEC §4): the attribute/bias probe ([`probe`]),
//! cross-modal adversarial examples and their defense ([`attack`]), and modality-specific
//! control of generation ([`control`]). They share host-side reconstruction with feature
//! classes switched off (the bundle's [`HostDecoder`]) and zero-shot classification.

pub mod attack;
pub mod control;
pub mod probe;

pub use crate::base::host::{cosine, normalize};
pub use crate::inspect::HostDecoder;

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
    }
}
