//! Attention of whole heads on host values (the packed path, issue 12): each head's scores,
//! softmax and product with the values in one pass, instead of flex's batched matmuls with
//! the `swap_dims` copies, the concatenation of the heads' ranges and the packing of the
//! result that went around them (about 4% of a batch-32 forward pass in a profile).

use super::finish::madd;
use super::{Kernel, Line, NR, PackedRows, PackedWeight, Panels, line, product};

/// Shapes of one [`attend`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    /// Sequences.
    pub batch: usize,
    /// Keys (and values) per sequence.
    pub keys: usize,
    /// Queries per sequence.
    pub queries: usize,
    /// Values per head.
    pub head_dim: usize,
}

/// One [`attend`] call's values and shapes (`cols`: the columns of q, k and v).
#[derive(Clone, Copy)]
pub(super) struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    s: Heads,
    cols: usize,
    scale: f32,
}

impl Inputs<'_> {
    /// `[batch, keys, queries, head_dim]`.
    fn dims(&self) -> [usize; 4] {
        let Heads {
            batch,
            keys,
            queries,
            head_dim,
        } = self.s;
        [batch, keys, queries, head_dim]
    }
}

/// The attention of whole heads: for each sequence and head h of the columns given,
/// `softmax(q_h · k_hᵀ * scale + mask) · v_h`. `q`: [batch * queries, cols], `k` and `v`:
/// [batch * keys, cols], row-major, `cols` a whole number of heads; `mask(sequence, head,
/// query)`: the additive mask's row of `keys` values, if any (`head` counts from the first
/// head of these columns). Returns [batch * queries, cols], row-major.
///
/// A value's bits depend only on its own head's q, k, v and mask rows (every sum runs in
/// index order), not on which other heads or sequences are computed with it.
pub fn attend<'m>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: Heads,
    scale: f32,
    mask: impl Fn(usize, usize, usize) -> Option<&'m [f32]>,
) -> Vec<f32> {
    let Heads {
        batch,
        keys,
        queries,
        head_dim,
    } = s;
    assert!(head_dim > 0, "heads of no values");
    let cols = q.len().checked_div(batch * queries).unwrap_or(0);
    assert!(
        q.len() == batch * queries * cols
            && cols.is_multiple_of(head_dim)
            && k.len() == batch * keys * cols
            && v.len() == k.len(),
        "q, k, v do not hold whole heads of {s:?}"
    );
    let inputs = Inputs {
        q,
        k,
        v,
        s,
        cols,
        scale,
    };
    let mut out = vec![0.0; q.len()];
    #[cfg(target_arch = "x86_64")]
    if super::available() {
        // SAFETY: AVX2 and FMA are present (`available`).
        unsafe { super::x86::attend(inputs, mask, &mut out) };
        return out;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    // SAFETY: SIMD128 is compiled in.
    unsafe {
        on_kernel::<super::wasm::Simd128, false>(inputs, mask, &mut out);
        return out;
    }
    #[allow(unreachable_code)]
    {
        run::<false>(inputs, mask, &mut out);
        out
    }
}

/// [`attend`]'s work on the packed GEMM's micro-kernel `K`, one head at a time: the scores
/// are the product of the head's queries with its keys laid out as a packed weight (`[d,
/// keys]`), the output the product of the softmax's rows with its values (`[keys, d]`),
/// written straight into the head's columns of `out`. Head-sized copies go into and out of
/// the packed layouts; the multiplications run at the kernel's speed (the loops of [`run`]
/// took 7% of a batch-1 text pass, twice flex's GEMMs).
///
/// # Safety
/// `K`'s instructions are available; `out` is [batch * queries, cols].
#[inline(always)]
pub(super) unsafe fn on_kernel<'m, K: Kernel, const FUSED: bool>(
    a: Inputs<'_>,
    mask: impl Fn(usize, usize, usize) -> Option<&'m [f32]>,
    out: &mut [f32],
) {
    let (q, k, v, cols, scale) = (a.q, a.k, a.v, a.cols, a.scale);
    let [batch, t, tq, d] = a.dims();
    if t == 0 || tq == 0 {
        return;
    }
    assert_eq!(out.len(), batch * tq * cols);
    let mut scores = vec![0.0f32; tq * t];
    for bi in 0..batch {
        let (qb, kb, vb) = (
            &q[bi * tq * cols..(bi + 1) * tq * cols],
            &k[bi * t * cols..(bi + 1) * t * cols],
            &v[bi * t * cols..(bi + 1) * t * cols],
        );
        for h in 0..cols / d {
            let c0 = h * d;
            // The head's queries as rows, its keys as the weight whose output columns are
            // the keys ([d, t]), its values as a [t, d] weight.
            let qs = PackedRows::strided(qb, cols, c0, tq, d);
            let ks = PackedWeight::transposed(kb, cols, c0, d, t);
            // SAFETY: `scores` is [tq, t]; `K` is available (caller).
            unsafe { product::<K>(&qs, &ks, 0..t, scores.as_mut_ptr(), t) };
            super::softmax::run::<FUSED>(&mut scores, t, scale, |i| mask(bi, h, i));
            let ps = PackedRows::new(&scores, tq, t);
            let vs = PackedWeight::strided(vb, cols, c0, t, d);
            // SAFETY: from this sequence's first row at the head's first column, `out` holds
            // `tq` rows `cols` apart of which the product writes the head's `d` columns.
            unsafe {
                let at = out.as_mut_ptr().add(bi * tq * cols + c0);
                product::<K>(&ps, &vs, 0..d, at, cols);
            }
        }
    }
}

/// [`attend`]'s work in plain loops, with fused multiply-adds where `FUSED` (`out` starts
/// zeroed): for targets without a micro-kernel, and the reference of [`on_kernel`] in the
/// tests.
#[inline(always)]
pub(super) fn run<'m, const FUSED: bool>(
    a: Inputs<'_>,
    mask: impl Fn(usize, usize, usize) -> Option<&'m [f32]>,
    out: &mut [f32],
) {
    let (q, k, v, cols, scale) = (a.q, a.k, a.v, a.cols, a.scale);
    let [batch, t, tq, d] = a.dims();
    if t == 0 {
        return;
    }
    // One head's keys transposed, [d][t]: a query's scores are then `d` multiply-adds of
    // rows of `t` values, which vectorise over the keys (a dot product over `d` would not
    // without reordering its sum).
    let mut kt = vec![0.0f32; d * t];
    let mut scores = vec![0.0f32; tq * t];
    for bi in 0..batch {
        for h in 0..cols / d {
            let c0 = h * d;
            for j in 0..t {
                let row = &k[(bi * t + j) * cols + c0..][..d];
                for (dd, &x) in row.iter().enumerate() {
                    kt[dd * t + j] = x;
                }
            }
            for i in 0..tq {
                let qi = &q[(bi * tq + i) * cols + c0..][..d];
                let row = &mut scores[i * t..(i + 1) * t];
                row.fill(0.0);
                for (dd, &a) in qi.iter().enumerate() {
                    for (s, &kv) in row.iter_mut().zip(&kt[dd * t..(dd + 1) * t]) {
                        *s = madd::<FUSED>(a, kv, *s);
                    }
                }
            }
            super::softmax::run::<FUSED>(&mut scores, t, scale, |i| mask(bi, h, i));
            for i in 0..tq {
                let o = &mut out[(bi * tq + i) * cols + c0..][..d];
                for (j, &p) in scores[i * t..(i + 1) * t].iter().enumerate() {
                    // Masked keys weigh exactly 0 (`softmax_rows`): adding 0 * v changes
                    // nothing for finite v, so they are skipped (half the keys of a causal
                    // mask).
                    if p == 0.0 {
                        continue;
                    }
                    let vr = &v[(bi * t + j) * cols + c0..][..d];
                    for (o, &x) in o.iter_mut().zip(vr) {
                        *o = madd::<FUSED>(p, x, *o);
                    }
                }
            }
        }
    }
}

impl PackedWeight {
    /// Packs the transpose of columns `c0..c0 + k` of `n` rows of `x` (row-major, `ld`
    /// values a row) as a `[k, n]` weight without a bias: `w[p][j] = x[j][c0 + p]`, one
    /// head's keys as the weight whose output columns are the keys.
    pub(super) fn transposed(x: &[f32], ld: usize, c0: usize, k: usize, n: usize) -> Self {
        assert!(c0 + k <= ld && (n == 0 || x.len() >= (n - 1) * ld + c0 + k));
        let panels_n = n.div_ceil(NR);
        let mut panels = vec![Line([0.0; NR]); panels_n * k];
        for j in 0..n {
            let (panel, col) = (j / NR, j % NR);
            for (p, &v) in x[j * ld + c0..j * ld + c0 + k].iter().enumerate() {
                panels[line(k, panels_n, panel, p)].0[col] = v;
            }
        }
        Self {
            k,
            n,
            panels: Panels::Packed(panels),
            bias: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the same attention in f64: two sequences, two heads, fewer queries than keys
    /// (the pooled last layer), a causal mask on one head of one sequence.
    #[test]
    fn attend_matches_f64() {
        let s = Heads {
            batch: 2,
            keys: 7,
            queries: 3,
            head_dim: 5,
        };
        let cols = 2 * s.head_dim;
        let val = |i: usize, m: usize| ((i * m % 23) as f32 - 11.0) * 0.07;
        let q: Vec<f32> = (0..s.batch * s.queries * cols).map(|i| val(i, 7)).collect();
        let k: Vec<f32> = (0..s.batch * s.keys * cols).map(|i| val(i, 5)).collect();
        let v: Vec<f32> = (0..s.batch * s.keys * cols).map(|i| val(i, 3)).collect();
        let causal: Vec<Vec<f32>> = (0..s.queries)
            .map(|i| {
                (0..s.keys)
                    .map(|j| if j > i + 2 { -1e9 } else { 0.0 })
                    .collect()
            })
            .collect();
        let mask = |b: usize, h: usize, i: usize| (b == 1 && h == 1).then(|| &causal[i][..]);
        let scale = 0.4;
        let got = attend(&q, &k, &v, s, scale, mask);
        for b in 0..s.batch {
            for h in 0..2 {
                for i in 0..s.queries {
                    let qi = &q[(b * s.queries + i) * cols + h * s.head_dim..][..s.head_dim];
                    let mut w: Vec<f64> = (0..s.keys)
                        .map(|j| {
                            let kj = &k[(b * s.keys + j) * cols + h * s.head_dim..][..s.head_dim];
                            let dot: f64 =
                                qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                            dot * scale as f64 + mask(b, h, i).map_or(0.0, |m| m[j] as f64)
                        })
                        .collect();
                    let max = w.iter().cloned().fold(f64::MIN, f64::max);
                    w.iter_mut().for_each(|x| *x = (*x - max).exp());
                    let sum: f64 = w.iter().sum();
                    for dd in 0..s.head_dim {
                        let want: f64 = (0..s.keys)
                            .map(|j| {
                                w[j] / sum * v[(b * s.keys + j) * cols + h * s.head_dim + dd] as f64
                            })
                            .sum();
                        let at = (b * s.queries + i) * cols + h * s.head_dim + dd;
                        assert!(
                            (got[at] as f64 - want).abs() < 1e-6,
                            "sequence {b} head {h} query {i} value {dd}: {} vs {want}",
                            got[at]
                        );
                    }
                }
            }
        }
        // The plain loops (targets without a kernel) agree.
        let mut plain = vec![0.0; got.len()];
        let inputs = Inputs {
            q: &q,
            k: &k,
            v: &v,
            s,
            cols,
            scale,
        };
        run::<false>(inputs, mask, &mut plain);
        for (a, b) in plain.iter().zip(&got) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // A head's values do not depend on the other heads computed with it.
        let one = |x: &[f32], rows: usize| -> Vec<f32> {
            (0..rows)
                .flat_map(|r| x[r * cols + s.head_dim..(r + 1) * cols].to_vec())
                .collect()
        };
        let alone = attend(
            &one(&q, s.batch * s.queries),
            &one(&k, s.batch * s.keys),
            &one(&v, s.batch * s.keys),
            s,
            scale,
            |b, _, i| mask(b, 1, i),
        );
        assert_eq!(alone, one(&got, s.batch * s.queries));
    }
}
