//! The k-th largest value of a row in linear time, for the TopK codes of training
//! (`train::sparse`) and of autodiff's `keep_top_k` (`dict::sae`).

/// Values per group in [`kth_largest`]'s first pass.
const GROUP: usize = 64;

/// The k-th largest of `values` (k in 1..=len) in the total order of `f32`, NaN ranking
/// lowest (with -inf). `work` is scratch space, reused between calls.
///
/// With at least k groups of [`GROUP`] values, the k-th largest group maximum is a lower
/// bound: the k largest maxima are k values at or above it. So only the values at or above
/// it (a few times k, where all the values of a row were copied and selected over) are
/// selected over: the selection was 15% of a TopK training step at K 4096, k 32.
pub fn kth_largest(values: &[f32], k: usize, work: &mut Vec<f32>) -> f32 {
    let key = |x: &f32| if x.is_nan() { f32::NEG_INFINITY } else { *x };
    let descending = |a: &f32, b: &f32| key(b).total_cmp(&key(a));
    work.clear();
    if values.len().div_ceil(GROUP) >= k {
        work.extend(values.chunks(GROUP).map(group_max));
        let (_, &mut lower, _) = work.select_nth_unstable_by(k - 1, descending);
        work.clear();
        work.extend(values.iter().copied().filter(|&v| v >= lower));
    }
    // Fewer than k values at or above the bound only where it is -inf next to NaNs.
    if work.len() < k {
        work.clear();
        work.extend_from_slice(values);
    }
    let (_, &mut kth, _) = work.select_nth_unstable_by(k - 1, descending);
    kth
}

/// Lanes of [`group_max`]: independent maxima the compiler keeps in one vector.
const MAX_LANES: usize = 8;

/// The largest of `group`, NaN skipped (-inf for a group of NaNs; which of two equal
/// zeros is unspecified).
fn group_max(group: &[f32]) -> f32 {
    let larger = |m: f32, v: f32| if v > m { v } else { m };
    let mut acc = [f32::NEG_INFINITY; MAX_LANES];
    let chunks = group.chunks_exact(MAX_LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| larger(m, v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = larger(*a, v);
        }
    }
    acc.into_iter().fold(tail, larger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kth_largest_equals_a_full_selection() {
        let mut rng = crate::base::SplitMix(11);
        let mut work = Vec::new();
        let key = |x: &f32| if x.is_nan() { f32::NEG_INFINITY } else { *x };
        for (len, k) in [
            (4096, 32),
            (4096, 64),
            (4096, 65),
            (300, 5),
            (64, 1),
            (7, 7),
            (1000, 512),
        ] {
            for round in 0..30 {
                // Rounded values: ties; signed zeros in every other round; NaNs and
                // infinities every third round (NaN ranks lowest).
                let values: Vec<f32> = (0..len)
                    .map(|i| {
                        let v = ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0;
                        let v = v.round();
                        match (round % 3, i % 5) {
                            (2, 0) => f32::NAN,
                            (2, 1) => f32::NEG_INFINITY,
                            _ if round % 2 == 1 && v == 0.0 => -0.0,
                            _ => v,
                        }
                    })
                    .collect();
                let mut all = values.clone();
                let (_, &mut want, _) =
                    all.select_nth_unstable_by(k - 1, |a, b| key(b).total_cmp(&key(a)));
                let got = kth_largest(&values, k, &mut work);
                assert_eq!(
                    key(&got).to_bits(),
                    key(&want).to_bits(),
                    "len {len} k {k} round {round}"
                );
            }
        }
    }
}
