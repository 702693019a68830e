//! The packed GEMM's x86_64 micro-kernel (AVX2 and FMA) and the AVX2-compiled entry points.

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
    } = t;
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

/// [`super::product`] compiled for AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn product(
    x: &PackedRows,
    w: &PackedWeight,
    cols: Range<usize>,
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: as for `super::product`; AVX2 and FMA are enabled here.
    unsafe { super::product::<Avx2>(x, w, cols, out, ldo) }
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

/// [`super::attention::on_kernel`] on this kernel, compiled with AVX2 and FMA.
///
/// # Safety
/// AVX2 and FMA are available.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn attend<'m>(
    a: super::attention::Inputs<'_>,
    mask: impl Fn(usize, usize, usize) -> Option<&'m [f32]>,
    out: &mut [f32],
) {
    unsafe { super::attention::on_kernel::<Avx2, true>(a, mask, out) }
}
