//! The packed GEMM's WebAssembly kernels (issue 12, `src/base/gemm/`), checked in
//! WebAssembly: `tests/wasm/gemm.test.mjs` compiles this file with `rustc --target
//! wasm32-unknown-unknown -C target-feature=+simd128 -C opt-level=2` (the page's settings),
//! once as is and once with `--cfg feature="relaxed-simd"` (the site's second build), and
//! runs their exports in Node's V8, the engine of Chromium's pages.
//!
//! The contract in wasm is exact, as natively, with the step each build has: every output
//! value is one chain over the inner dimension in order, then the bias. With SIMD128 the
//! step is `acc = acc + x[p] * w[p]` (two roundings); with relaxed SIMD it is
//! `relaxed_madd`, which an engine may run fused (one rounding, as natively) or not, the
//! same way for every value. So the products are compared bit for bit with the chain
//! (`fused` 0 or 1) written out in scalar Rust, compiled to the same wasm.

#![allow(dead_code)]

#[path = "../../src/base/gemm/mod.rs"]
mod gemm;

#[path = "../common/gemm_cases.rs"]
mod cases;

use cases::{SHAPES, chain, differing, random, ranges};
use gemm::{Activation, ColumnWriter, NR, PackedRows, PackedWeight};
use std::sync::Arc;

fn weight(w: &[f32], k: usize, n: usize, b: Option<&[f32]>, copy: bool) -> PackedWeight {
    if copy {
        PackedWeight::new(w, k, n, b)
    } else {
        PackedWeight::borrowed(Arc::new(w.to_vec()), k, n, b)
    }
}

/// 1 where the kernel runs in this build (SIMD128 compiled in).
#[unsafe(no_mangle)]
pub extern "C" fn available() -> u32 {
    gemm::available() as u32
}

/// 1 where the page lays out weights per call instead of keeping a packed copy.
#[unsafe(no_mangle)]
pub extern "C" fn borrows() -> u32 {
    !gemm::packs_once() as u32
}

/// Values that differ from the chain, over ViT-B/32's shapes (50 and 77 tokens, a 400-row
/// part) and ragged ones (row and column tails, inner dimensions off the 256-wide blocks),
/// for the borrowed weight (`copy` 0, the page's) or the packed copy (1), with the output
/// columns written as 1, 2 or 3 ranges, and one row alone, against the fused (`fused` 1) or
/// the unfused (0) chain.
#[unsafe(no_mangle)]
pub extern "C" fn products_differing(copy: u32, fused: u32) -> u32 {
    let mut differ = 0;
    for (m, k, n) in SHAPES {
        let x = random(m * k, 1);
        let w = random(k * n, 2);
        let b = random(n, 3);
        let want = chain(&x, &w, Some(&b), [m, k, n], fused == 1);
        let packed = weight(&w, k, n, Some(&b), copy == 1);
        let rows = PackedRows::new(&x, m, k);
        for parts in [1, 2, 3] {
            let out = ColumnWriter::new(m, 0..n);
            for cols in ranges(n, parts, NR) {
                out.write(&rows, &packed, cols, Activation::Identity, None);
            }
            differ += differing(&out.into_vec(), &want);
        }
        let last = m - 1;
        let alone = ColumnWriter::new(1, 0..n);
        let one = PackedRows::new(&x[last * k..], 1, k);
        alone.write(&one, &packed, 0..n, Activation::Identity, None);
        differ += differing(&alone.into_vec(), &want[last * n..]);
    }
    differ as u32
}

/// Values of a column window (64..192 of 200, written as two ranges) that differ from the
/// chain's (`fused` as for [`products_differing`]).
#[unsafe(no_mangle)]
pub extern "C" fn window_differing(fused: u32) -> u32 {
    let (m, k, n) = (9, 100, 200);
    let (x, w) = (random(m * k, 4), random(k * n, 5));
    let want = chain(&x, &w, None, [m, k, n], fused == 1);
    let packed = weight(&w, k, n, None, false);
    let rows = PackedRows::new(&x, m, k);
    let out = ColumnWriter::new(m, 64..192);
    out.write(&rows, &packed, 64..128, Activation::Identity, None);
    out.write(&rows, &packed, 128..192, Activation::Identity, None);
    let got = out.into_vec();
    let mut differ = 0;
    for i in 0..m {
        for c in 0..128 {
            differ += (got[i * 128 + c].to_bits() != want[i * n + 64 + c].to_bits()) as u32;
        }
    }
    differ
}

/// quick_gelu and the residual after the bias (ViT-B/32's fc1 shape), against f64 maths:
/// the worst error in units of 1e-6 relative + 1e-6 absolute, times 1000 (<= 1000 passes;
/// the same bound as natively, `tests/gemm.rs`, which explains it). Large magnitudes must
/// saturate (sigmoid 0 or 1): u32::MAX if they do not. `fused`: the chain the kernel runs.
#[unsafe(no_mangle)]
pub extern "C" fn activation_error_milli(fused: u32) -> u32 {
    let (m, k, n) = (50, 768, 3072);
    let (x, w, b) = (random(m * k, 6), random(k * n, 7), random(n, 8));
    let residual: Vec<f32> = random(m * n, 9).iter().map(|v| v * 3.0).collect();
    let lin = chain(&x, &w, Some(&b), [m, k, n], fused == 1);
    let packed = weight(&w, k, n, Some(&b), false);
    let out = ColumnWriter::new(m, 0..n);
    out.write(
        &PackedRows::new(&x, m, k),
        &packed,
        0..n,
        Activation::QuickGelu,
        Some(&residual),
    );
    let got = out.into_vec();
    let mut worst = 0.0f64;
    for ((&g, &v), &r) in got.iter().zip(&lin).zip(&residual) {
        let v = v as f64;
        let want = v / (1.0 + (-1.702 * v).exp()) + r as f64;
        worst = worst.max((g as f64 - want).abs() / (1e-6 + 1e-6 * want.abs()));
    }
    let w: Vec<f32> = [-1e4f32, -60.0, 60.0, 1e4]
        .into_iter()
        .chain([0.0; 12])
        .collect();
    let out = ColumnWriter::new(4, 0..16);
    out.write(
        &PackedRows::new(&[1.0; 4], 4, 1),
        &weight(&w, 1, 16, None, false),
        0..16,
        Activation::QuickGelu,
        None,
    );
    let sat = out.into_vec();
    if !(sat[0].abs() < 1e-30 && sat[1].abs() < 1e-30 && sat[2] == 60.0 && sat[3] == 1e4) {
        return u32::MAX;
    }
    (worst * 1000.0).ceil().min(u32::MAX as f64) as u32
}
