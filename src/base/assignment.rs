//! Minimum-cost assignment on a square cost matrix (the Hungarian method in its
//! shortest-augmenting-path form with potentials, O(n^3)): the post-hoc latent matching of
//! split dictionaries (Lee et al. 2026 use scipy's `linear_sum_assignment` the same way).

/// For an n x n row-major cost matrix, the column assigned to every row, minimising the
/// total cost. Costs must be finite.
pub fn min_cost_assignment(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "cost must be n x n");
    if n == 0 {
        return Vec::new();
    }
    // 1-based potentials u (rows), v (columns); p[j]: row matched to column j (0: none).
    let (mut u, mut v) = (vec![0f64; n + 1], vec![0f64; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            let row = &cost[(i0 - 1) * n..i0 * n];
            for j in 1..=n {
                if !used[j] {
                    let cur = row[j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut row_to_col = vec![0usize; n];
    for j in 1..=n {
        row_to_col[p[j] - 1] = j - 1;
    }
    row_to_col
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::SplitMix;

    fn total(cost: &[f64], n: usize, a: &[usize]) -> f64 {
        (0..n).map(|i| cost[i * n + a[i]]).sum()
    }

    /// Every permutation of 0..n (Heap's algorithm).
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        fn go(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        go(n, &mut (0..n).collect(), &mut out);
        out
    }

    #[test]
    fn matches_brute_force() {
        let mut rng = SplitMix(5);
        for n in 1..=6 {
            for _ in 0..20 {
                // Ties and negative costs included.
                let cost: Vec<f64> = (0..n * n).map(|_| rng.below(7) as f64 - 3.0).collect();
                let a = min_cost_assignment(&cost, n);
                let mut seen = a.clone();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "a permutation");
                let best = permutations(n)
                    .iter()
                    .map(|p| total(&cost, n, p))
                    .fold(f64::INFINITY, f64::min);
                assert_eq!(total(&cost, n, &a), best, "n {n}: {cost:?}");
            }
        }
        assert!(min_cost_assignment(&[], 0).is_empty());
    }
}
