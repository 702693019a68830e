//! Interpretability and quality metrics (SPEC §3): EmbSim, WinRate, and reconstruction
//! quality (FVU, explained variance, L0, dead fraction, cosine).

use serde::{Deserialize, Deserializer, Serialize};

/// Mean pairwise cosine similarity of a set of embeddings (rows of `rows`, each of width
/// `d`). `None` for fewer than two rows.
///
/// With unit rows u_i, the sum over pairs i != j of u_i . u_j is |sum_i u_i|^2 minus
/// sum_i |u_i|^2, so this costs n x d, not n^2 x d: `analyze` takes it for every feature
/// and baseline direction (over 10,000 sets of 20 at SPEC §1 sizes), and the pairwise
/// form was about a second of host time in every run, what a GPU's `analyze` waited on
/// most. In f64 the subtraction loses about n x 1e-16 against the result.
pub fn emb_sim(rows: &[&[f32]]) -> Option<f64> {
    let n = rows.len();
    if n < 2 {
        return None;
    }
    let d = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let (mut total, mut own) = (vec![0f64; d], 0.0);
    for r in rows {
        let norm = r
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        for (t, x) in total.iter_mut().zip(*r) {
            let u = *x as f64 / norm;
            *t += u;
            own += u * u;
        }
    }
    let all: f64 = total.iter().map(|t| t * t).sum();
    Some((all - own) / (n * (n - 1)) as f64)
}

/// WinRate of A over B: the fraction of (a, b) pairs with a > b (ties count half),
/// and the number of comparisons.
pub fn win_rate(a: &[f64], b: &[f64]) -> (f64, usize) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 0);
    }
    let mut sorted = b.to_vec();
    sorted.sort_by(|x, y| x.total_cmp(y));
    let mut wins = 0.0;
    for x in a {
        let below = sorted.partition_point(|y| y < x);
        let not_above = sorted.partition_point(|y| y <= x);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    let n = a.len() * b.len();
    (wins / n as f64, n)
}

/// Reconstruction quality of one modality.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Quality {
    /// Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean x||^2.
    #[serde(deserialize_with = "nan_if_null")]
    pub fvu: f64,
    /// 1 - FVU.
    #[serde(deserialize_with = "nan_if_null")]
    pub explained_variance: f64,
    /// Mean number of active features per sample.
    pub l0: f64,
    /// Fraction of features that never fired on these samples.
    pub dead_fraction: f64,
    /// Mean cosine(x, x_hat).
    #[serde(deserialize_with = "nan_if_null")]
    pub cosine: f64,
}

/// JSON has no NaN: serde_json writes the NaN of an NCL head's reconstruction metrics as
/// `null`, so reading one back maps `null` to NaN again.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Per-modality quality of a dictionary on the first rows of a data set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// Steps done when measured.
    pub step: usize,
    /// On image embeddings.
    pub image: Quality,
    /// On text embeddings.
    pub text: Quality,
}

/// WinRate of the dictionary's EmbSim over a baseline, per modality.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WinRates {
    /// Over raw CLIP dimensions: (rate, comparisons) for images, texts.
    pub vs_raw_dims: [(f64, usize); 2],
    /// Over random directions.
    pub vs_random_directions: [(f64, usize); 2],
}

/// Quality from host matrices: `x`, `x_hat` [n * d], `z` [n * k].
pub fn quality(x: &[f32], x_hat: &[f32], z: &[f32], d: usize, k: usize) -> Quality {
    let n = x.len() / d.max(1);
    if n == 0 {
        return Quality::default();
    }
    let mut mean = vec![0f64; d];
    for row in x.chunks(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64 / n as f64;
        }
    }
    let (mut err, mut var, mut cos) = (0.0, 0.0, 0.0);
    for (row, rec) in x.chunks(d).zip(x_hat.chunks(d)) {
        let (mut dot, mut nx, mut nr) = (0.0, 0.0, 0.0);
        for j in 0..d {
            let (a, b) = (row[j] as f64, rec[j] as f64);
            err += (a - b).powi(2);
            var += (a - mean[j]).powi(2);
            dot += a * b;
            nx += a * a;
            nr += b * b;
        }
        cos += dot / (nx.sqrt() * nr.sqrt()).max(1e-12);
    }
    let mut fired = vec![false; k];
    let mut active = 0usize;
    for row in z.chunks(k) {
        for (f, v) in fired.iter_mut().zip(row) {
            if *v > 0.0 {
                *f = true;
                active += 1;
            }
        }
    }
    let fvu = err / var.max(1e-12);
    Quality {
        fvu,
        explained_variance: 1.0 - fvu,
        l0: active as f64 / n as f64,
        dead_fraction: fired.iter().filter(|f| !**f).count() as f64 / k.max(1) as f64,
        cosine: cos / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emb_sim_by_hand() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 2.0];
        let c = [1.0f32, 1.0];
        // cos(a,b)=0, cos(a,c)=cos(b,c)=1/sqrt2
        let s = emb_sim(&[&a, &b, &c]).unwrap();
        assert!((s - (2.0 / 2f64.sqrt()) / 3.0).abs() < 1e-12);
        assert_eq!(emb_sim(&[&a]), None);
        assert!((emb_sim(&[&a, &a]).unwrap() - 1.0).abs() < 1e-12);
        // A zero row counts as orthogonal to everything.
        let z = [0.0f32, 0.0];
        assert!((emb_sim(&[&a, &z]).unwrap()).abs() < 1e-12);
    }

    /// The n x d form against the mean over pairs, on random sets of 2 to 30 rows.
    #[test]
    fn emb_sim_equals_the_mean_over_pairs() {
        let mut rng = crate::base::SplitMix(5);
        for n in 2..=30 {
            let d = 64;
            let rows: Vec<Vec<f32>> = (0..n)
                .map(|_| {
                    (0..d)
                        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.3)
                        .collect()
                })
                .collect();
            let unit: Vec<Vec<f64>> = rows
                .iter()
                .map(|r| {
                    let norm = r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                    r.iter().map(|x| *x as f64 / norm).collect()
                })
                .collect();
            let (mut sum, mut count) = (0.0, 0);
            for i in 0..n {
                for j in i + 1..n {
                    sum += unit[i]
                        .iter()
                        .zip(&unit[j])
                        .map(|(a, b)| a * b)
                        .sum::<f64>();
                    count += 1;
                }
            }
            let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let got = emb_sim(&refs).unwrap();
            assert!((got - sum / count as f64).abs() < 1e-12, "n {n}: {got}");
        }
    }

    #[test]
    fn win_rate_counts_ties_half() {
        let (w, n) = win_rate(&[0.5, 0.9], &[0.5, 0.1]);
        assert_eq!(n, 4);
        // 0.5 vs (0.5 tie, 0.1 win) = 1.5; 0.9 beats both = 2 -> 3.5 / 4
        assert!((w - 0.875).abs() < 1e-12);
        assert_eq!(win_rate(&[], &[1.0]), (0.0, 0));
    }

    #[test]
    fn quality_by_hand() {
        let x = [1.0f32, 0.0, 0.0, 1.0];
        let q = quality(&x, &x, &[1.0, 0.0, 0.0, 0.0], 2, 2);
        assert_eq!(q.fvu, 0.0);
        assert!((q.cosine - 1.0).abs() < 1e-12);
        assert_eq!(q.l0, 0.5);
        assert_eq!(q.dead_fraction, 0.5);
    }
}
