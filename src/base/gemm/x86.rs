//! The packed GEMM's x86_64 micro-kernels (AVX2 and FMA; AVX-512F) and the entry points
//! compiled for them.

use super::*;
use std::arch::x86_64::*;

/// The 6 x 16 (or 5 x 16) AVX2/FMA kernel: 2R accumulators, one FMA chain per value.
pub(super) struct Avx2;

impl Kernel for Avx2 {
    #[inline(always)]
    unsafe fn tile<const R: usize>(t: Tile) {
        // SAFETY: as for `Kernel::tile`.
        unsafe { kernel::<R>(t) }
    }
}

/// [`Kernel::tile`] for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel<const R: usize>(t: Tile) {
    let Tile {
        kc,
        a,
        b,
        c,
        ldc,
        load,
        prefetch,
        ..
    } = t;
    debug_assert_eq!(t.panels, 1, "one panel a tile (`Kernel::PANELS`)");
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    if load {
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: the caller passes a full R x 16 tile with row stride `ldc`.
            unsafe {
                row[0] = _mm256_loadu_ps(c.add(r * ldc));
                row[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
            }
        }
    }
    for p in 0..kc {
        if prefetch {
            // A hint: it never faults, even past the end of the weight.
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((kc + p) * NR).cast::<i8>());
        }
        // SAFETY: `a` holds kc x R values and `b` kc 64-byte lines (caller).
        let (b0, b1) = unsafe {
            (
                _mm256_load_ps(b.add(p * NR)),
                _mm256_load_ps(b.add(p * NR + 8)),
            )
        };
        for (r, row) in acc.iter_mut().enumerate() {
            let ar = unsafe { _mm256_broadcast_ss(&*a.add(p * R + r)) };
            row[0] = _mm256_fmadd_ps(ar, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ar, b1, row[1]);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // SAFETY: as for the loads.
        unsafe {
            _mm256_storeu_ps(c.add(r * ldc), row[0]);
            _mm256_storeu_ps(c.add(r * ldc + 8), row[1]);
        }
    }
}

/// The AVX-512F kernel: `R` rows (8 to 12, [`super::WIDE_ROWS`]) by one or two panels, a
/// 512-bit accumulator per row and panel (up to 24). Every value is the same chain of
/// fused multiply-adds in inner-index order as [`Avx2`]'s, so the two give the same bits;
/// this one issues half the instructions, and two panels a call load each row's broadcast
/// once for 32 columns.
pub(super) struct Avx512;

impl Kernel for Avx512 {
    const PANELS: usize = 2;

    #[inline(always)]
    unsafe fn tile<const R: usize>(t: Tile) {
        // SAFETY: as for `Kernel::tile`.
        unsafe {
            if t.panels == 2 {
                wide::<R, 2>(t)
            } else {
                wide::<R, 1>(t)
            }
        }
    }
}

/// [`Kernel::tile`] for AVX-512F, `P` panels.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn wide<const R: usize, const P: usize>(t: Tile) {
    let Tile {
        kc,
        a,
        b,
        c,
        ldc,
        load,
        prefetch,
        ..
    } = t;
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    if load {
        for (r, row) in acc.iter_mut().enumerate() {
            for (q, v) in row.iter_mut().enumerate() {
                // SAFETY: the caller passes a full R x 16P tile with row stride `ldc`.
                *v = unsafe { _mm512_loadu_ps(c.add(r * ldc + q * NR)) };
            }
        }
    }
    for p in 0..kc {
        if prefetch {
            for q in 0..P {
                // The next tile's panels follow this one's: panel q's line p is `(P + q)
                // kc + p` lines on. A hint: it never faults, even past the weight's end.
                let at = b.wrapping_add(((P + q) * kc + p) * NR);
                _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
            }
        }
        // SAFETY: `a` holds kc x R values and each panel kc 64-byte-aligned lines (caller).
        let w: [__m512; P] =
            std::array::from_fn(|q| unsafe { _mm512_load_ps(b.add((q * kc + p) * NR)) });
        for (r, row) in acc.iter_mut().enumerate() {
            let ar = _mm512_set1_ps(unsafe { *a.add(p * R + r) });
            for (v, &wq) in row.iter_mut().zip(&w) {
                *v = _mm512_fmadd_ps(ar, wq, *v);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (q, &v) in row.iter().enumerate() {
            // SAFETY: as for the loads.
            unsafe { _mm512_storeu_ps(c.add(r * ldc + q * NR), v) };
        }
    }
}

/// [`super::product`] on this machine's kernel: [`Avx512`] where [`super::wide`], else
/// [`Avx2`].
///
/// # Safety
/// As for [`super::product`]; AVX2 and FMA are available.
pub(super) unsafe fn product(
    x: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as for this function; `wide` checked AVX-512F.
    unsafe {
        if super::wide() {
            product_wide(x, w, cols, out, ldo)
        } else {
            product_avx2(x, w, cols, out, ldo)
        }
    }
}

/// [`super::product`] compiled for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn product_avx2(
    x: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as for `super::product`; AVX2 and FMA are enabled here.
    unsafe { super::product::<Avx2>(x, w, cols, out, ldo) }
}

/// [`super::product`] compiled for AVX-512F, so that [`wide`] inlines into its loop.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn product_wide(
    x: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as for `super::product`; AVX-512F, AVX2 and FMA are enabled here.
    unsafe { super::product::<Avx512>(x, w, cols, out, ldo) }
}

/// [`Finish::run`] compiled for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn finish(f: Finish<'_>) {
    // SAFETY: as for `Finish::run`.
    unsafe { f.run::<true>() }
}

/// [`super::softmax_rows`] compiled for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax_rows<'m>(
    values: &mut [f32],
    len: usize,
    scale: f32,
    mask: impl Fn(usize) -> Option<&'m [f32]>,
) {
    super::softmax::run::<true>(values, len, scale, mask)
}

/// [`super::attention::on_kernel`] on this machine's kernel (as [`product`]).
///
/// # Safety
/// AVX2 and FMA are available.
pub(super) unsafe fn attend<'m>(
    a: super::attention::Inputs<'_>,
    mask: impl Fn(usize, usize, usize) -> Option<&'m [f32]>,
    out: &mut [f32],
) {
    // SAFETY: as for this function; `wide` checked AVX-512F.
    unsafe {
        if super::wide() {
            attend_wide(a, mask, out)
        } else {
            attend_avx2(a, mask, out)
        }
    }
}

/// [`attend`] compiled with AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2<'m>(
    a: super::attention::Inputs<'_>,
    mask: impl Fn(usize, usize, usize) -> Option<&'m [f32]>,
    out: &mut [f32],
) {
    unsafe { super::attention::on_kernel::<Avx2, true>(a, mask, out) }
}

/// [`attend`] compiled with AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn attend_wide<'m>(
    a: super::attention::Inputs<'_>,
    mask: impl Fn(usize, usize, usize) -> Option<&'m [f32]>,
    out: &mut [f32],
) {
    unsafe { super::attention::on_kernel::<Avx512, true>(a, mask, out) }
}

// The inputs and the defining chain of the integration and wasm tests.
#[cfg(test)]
#[path = "../../../tests/common/gemm_cases.rs"]
#[allow(dead_code)]
mod cases;

#[cfg(test)]
mod tests {
    use super::*;

    use super::cases::{SHAPES, chain, random};

    /// Both kernels, at every block size either would use, on the packed copy and on a
    /// borrowed weight, from the first panel and from the second (pairs of panels then start
    /// at odd panels), give every value as the one chain of `f32::mul_add` over the inner
    /// dimension in order: shapes with part-filled row blocks and panels, odd panel counts,
    /// inner dimensions over [`KC`] (a block continued from the stored accumulator), more
    /// than [`MC_ROWS`] rows, and more panels than a borrowed weight lays out at once.
    #[test]
    fn every_kernel_and_block_size_is_the_fma_chain() {
        if !available() {
            return;
        }
        type Product = unsafe fn(&PackedRows, &PackedWeight, Range<usize>, *mut f32, usize);
        let mut kernels: Vec<(&str, Product)> = vec![("avx2", product_avx2)];
        if std::is_x86_feature_detected!("avx512f") {
            kernels.push(("avx512", product_wide));
        }
        for (m, k, n) in SHAPES {
            let x = random(m * k, 1 + m as u64);
            let w = random(k * n, 2 + n as u64);
            let want = chain(&x, &w, None, [m, k, n], true);
            let packed = PackedWeight::new(&w, k, n, None);
            let borrowed = PackedWeight::borrowed(Arc::new(w.clone()), k, n, None);
            for mr in [5, MR].into_iter().chain(WIDE_ROWS) {
                let rows = PackedRows::blocked(&x, m, k, mr);
                for (weight, cols) in [&packed, &borrowed]
                    .into_iter()
                    .flat_map(|wt| [(wt, 0..n), (wt, NR.min(n)..n)])
                {
                    let ldo = cols.len();
                    for &(name, run) in &kernels {
                        let mut out = vec![f32::NAN; m * ldo];
                        // SAFETY: AVX2 and FMA (`available`), AVX-512F where `wide`; `out`
                        // is [m, ldo] with `ldo` the range's width.
                        unsafe { run(&rows, weight, cols.clone(), out.as_mut_ptr(), ldo) };
                        for i in 0..m {
                            for (o, j) in cols.clone().enumerate() {
                                let (got, want) = (out[i * ldo + o], want[i * n + j]);
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{name}, blocks of {mr}, [{m}, {k}] x [{k}, {n}], columns \
                                     {cols:?} (copy: {}): [{i}, {j}] {got} vs {want}",
                                    weight.is_copy()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
