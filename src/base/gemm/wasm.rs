//! The packed GEMM's WebAssembly micro-kernel (SIMD128).

use super::*;
use core::arch::wasm32::*;

/// The 2 x 16 SIMD128 kernel: 8 accumulators. Kernels of more accumulators ran slower
/// in V8 (Node 20, x86-64; a throwaway probe of each shape on L1-resident data, GFLOP/s
/// at a 78-GFLOP/s-FMA, 39-GFLOP/s-mul+add core): 2 x 16 and 4 x 8 35, 5 x 8 21, 6 x 8
/// 25, 3 x 16 24, 4 x 12 (gemm's simd128 shape, transposed) 25. V8 keeps at most about
/// 8 accumulators in registers across the loop; more spill. Written out by hand, not as
/// loops over arrays: the page's code is optimised for size, where LLVM does not unroll.
pub(super) struct Simd128;

impl Kernel for Simd128 {
    #[inline]
    unsafe fn tile<const R: usize>(t: Tile) {
        let Tile {
            kc,
            a,
            b,
            c,
            ldc,
            load,
            ..
        } = t;
        assert_eq!(R, WASM_ROWS, "wasm packs rows in pairs (`block_rows`)");
        debug_assert_eq!(t.panels, 1, "one panel a tile (`Kernel::PANELS`)");
        // SAFETY (every access): within the 2 x 16 tile at `c` (row stride `ldc`), the
        // kc x 2 values at `a` and the kc lines at `b` (caller).
        let at = |r: usize, o: usize| unsafe { c.add(r * ldc + o) }.cast::<v128>();
        let init = |r: usize, o: usize| {
            if load {
                unsafe { v128_load(at(r, o)) }
            } else {
                f32x4_splat(0.0)
            }
        };
        let (mut c00, mut c01, mut c02, mut c03) =
            (init(0, 0), init(0, 4), init(0, 8), init(0, 12));
        let (mut c10, mut c11, mut c12, mut c13) =
            (init(1, 0), init(1, 4), init(1, 8), init(1, 12));
        for p in 0..kc {
            let (b0, b1, b2, b3, a0, a1) = unsafe {
                let bp = b.add(p * NR);
                let ap = a.add(p * WASM_ROWS);
                (
                    v128_load(bp.cast::<v128>()),
                    v128_load(bp.add(4).cast::<v128>()),
                    v128_load(bp.add(8).cast::<v128>()),
                    v128_load(bp.add(12).cast::<v128>()),
                    v128_load32_splat(ap.cast::<u32>()),
                    v128_load32_splat(ap.add(1).cast::<u32>()),
                )
            };
            c00 = f32x4_add(c00, f32x4_mul(a0, b0));
            c01 = f32x4_add(c01, f32x4_mul(a0, b1));
            c02 = f32x4_add(c02, f32x4_mul(a0, b2));
            c03 = f32x4_add(c03, f32x4_mul(a0, b3));
            c10 = f32x4_add(c10, f32x4_mul(a1, b0));
            c11 = f32x4_add(c11, f32x4_mul(a1, b1));
            c12 = f32x4_add(c12, f32x4_mul(a1, b2));
            c13 = f32x4_add(c13, f32x4_mul(a1, b3));
        }
        for (r, row) in [[c00, c01, c02, c03], [c10, c11, c12, c13]]
            .into_iter()
            .enumerate()
        {
            for (o, v) in row.into_iter().enumerate() {
                unsafe { v128_store(at(r, 4 * o), v) };
            }
        }
    }
}
