//! The packed GEMM's WebAssembly micro-kernels: SIMD128, and relaxed SIMD's fused
//! multiply-add where the module is built with the `relaxed-simd` feature.

use super::*;
use core::arch::wasm32::*;

/// The page's kernel: 2 rows x 16 columns, 8 accumulators. Without the `relaxed-simd`
/// feature each step is `acc + a * w` (two roundings); with it `f32x4.relaxed_madd`, which
/// V8 lowers to one fused multiply-add where the CPU has FMA (else to mul + add).
///
/// The shape: kernels of more accumulators ran slower in V8 (Node 20, x86-64; a throwaway
/// probe of each shape on L1-resident data, GFLOP/s at a 78-GFLOP/s-FMA, 39-GFLOP/s-mul+add
/// core): 2 x 16 and 4 x 8 35, 5 x 8 21, 6 x 8 25, 3 x 16 24, 4 x 12 (gemm's simd128 shape,
/// transposed) 25. V8 keeps at most about 8 accumulators in registers across the loop;
/// more spill. With relaxed_madd a 3 x 16 kernel (12 accumulators) ran 1.3x faster than
/// mul + add in that probe in Chromium 148, but inside this GEMM (the page's products,
/// `ColumnWriter::write` on a borrowed weight, headless Chromium 148, the 2-core AVX-512
/// Xeon) it ran 21-22 GFLOP/s against 30-31 for relaxed 2 x 16 and 26-27 for mul + add
/// 2 x 16, so both builds keep 2 x 16.
///
/// Written out by hand, not as loops over arrays, so the kernel's shape does not hang on
/// LLVM's unrolling (none at opt-level "s", which the page's code had until 2026-12-05).
pub(super) struct Simd128;

impl Kernel for Simd128 {
    #[inline]
    unsafe fn tile<const R: usize>(t: Tile) {
        assert_eq!(
            R, WASM_ROWS,
            "the wasm kernel has one block size (`block_rows`)"
        );
        debug_assert_eq!(t.panels, 1, "one panel a tile (`Kernel::PANELS`)");
        // SAFETY: the caller's contract (`Kernel::tile`); relaxed SIMD is compiled in only
        // with the feature, and a module that has it loads only where the browser has it
        // (worker.js picks the build).
        unsafe {
            #[cfg(feature = "relaxed-simd")]
            relaxed_2x16(t);
            #[cfg(not(feature = "relaxed-simd"))]
            plain_2x16(t);
        }
    }
}

/// The accumulators' start: the tile's values (a later inner block) or zeros.
///
/// # Safety
/// `c + r * ldc + o` holds 4 values when `load`.
#[inline(always)]
unsafe fn init(c: *mut f32, ldc: usize, load: bool, r: usize, o: usize) -> v128 {
    if load {
        unsafe { v128_load(c.add(r * ldc + o).cast::<v128>()) }
    } else {
        f32x4_splat(0.0)
    }
}

/// Stores the two rows of 4 vectors (16 values) into the tile at `c`, rows `ldc` apart.
///
/// # Safety
/// The tile at `c` holds 2 x 16 values.
#[inline(always)]
unsafe fn store(c: *mut f32, ldc: usize, rows: [[v128; 4]; WASM_ROWS]) {
    for (r, row) in rows.into_iter().enumerate() {
        for (o, v) in row.into_iter().enumerate() {
            unsafe { v128_store(c.add(r * ldc + 4 * o).cast::<v128>(), v) };
        }
    }
}

/// The inner index `p`'s four weight vectors (one 16-value line).
///
/// # Safety
/// `b + p * NR` holds 16 values.
#[inline(always)]
unsafe fn line(b: *const f32, p: usize) -> [v128; 4] {
    unsafe {
        let bp = b.add(p * NR);
        [
            v128_load(bp.cast::<v128>()),
            v128_load(bp.add(4).cast::<v128>()),
            v128_load(bp.add(8).cast::<v128>()),
            v128_load(bp.add(12).cast::<v128>()),
        ]
    }
}

/// Row `r`'s value at inner index `p`, in all four lanes (the rows' values are packed in
/// pairs, one pair per inner index).
///
/// # Safety
/// `a + p * 2 + r` holds a value.
#[inline(always)]
unsafe fn splat(a: *const f32, p: usize, r: usize) -> v128 {
    unsafe { v128_load32_splat(a.add(p * WASM_ROWS + r).cast::<u32>()) }
}

/// The 2 x 16 kernel over `$t` ([`Tile`]), with `$madd(a, w, acc)` as every step.
macro_rules! tile_2x16 {
    ($t:expr, $madd:path) => {{
        let Tile {
            kc,
            a,
            b,
            c,
            ldc,
            load,
            ..
        } = $t;
        // SAFETY (every access): within the 2 x 16 tile at `c` (row stride `ldc`), the kc x
        // 2 values at `a` and the kc lines at `b` (caller).
        let v = |r, o| unsafe { init(c, ldc, load, r, o) };
        let (mut c00, mut c01, mut c02, mut c03) = (v(0, 0), v(0, 4), v(0, 8), v(0, 12));
        let (mut c10, mut c11, mut c12, mut c13) = (v(1, 0), v(1, 4), v(1, 8), v(1, 12));
        for p in 0..kc {
            let ([b0, b1, b2, b3], a0, a1) =
                unsafe { (line(b, p), splat(a, p, 0), splat(a, p, 1)) };
            c00 = $madd(a0, b0, c00);
            c01 = $madd(a0, b1, c01);
            c02 = $madd(a0, b2, c02);
            c03 = $madd(a0, b3, c03);
            c10 = $madd(a1, b0, c10);
            c11 = $madd(a1, b1, c11);
            c12 = $madd(a1, b2, c12);
            c13 = $madd(a1, b3, c13);
        }
        unsafe { store(c, ldc, [[c00, c01, c02, c03], [c10, c11, c12, c13]]) };
    }};
}

/// `acc + a * w` in two roundings: WebAssembly SIMD128 has no fused multiply-add.
#[cfg(not(feature = "relaxed-simd"))]
#[inline(always)]
fn mul_then_add(a: v128, w: v128, acc: v128) -> v128 {
    f32x4_add(acc, f32x4_mul(a, w))
}

/// The kernel with `acc + a * w`.
///
/// # Safety
/// As [`Kernel::tile`], with 2-row blocks.
#[cfg(not(feature = "relaxed-simd"))]
unsafe fn plain_2x16(t: Tile) {
    tile_2x16!(t, mul_then_add)
}

/// The kernel with `relaxed_madd(a, w, acc)`: a fused multiply-add where the engine has one.
///
/// # Safety
/// As [`Kernel::tile`], with 2-row blocks; the engine has relaxed SIMD.
#[cfg(feature = "relaxed-simd")]
#[target_feature(enable = "relaxed-simd")]
unsafe fn relaxed_2x16(t: Tile) {
    tile_2x16!(t, f32x4_relaxed_madd)
}
