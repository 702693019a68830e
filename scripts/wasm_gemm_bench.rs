//! The page's GEMM alone in WebAssembly, for `scripts/bench_wasm_gemm.mjs` (issue 12): it
//! includes `src/base/gemm/` as `tests/wasm/gemm_check.rs` does and exports a setup and a
//! timed loop of `ColumnWriter::write` on a borrowed weight (the page's path: no packed
//! copy, the weight laid out per call), bias included.

#![allow(dead_code)]

#[path = "../src/base/gemm/mod.rs"]
mod gemm;

use gemm::{Activation, ColumnWriter, PackedRows, PackedWeight};
use std::sync::{Arc, Mutex};

/// Uniform values in [-0.5, 0.5) from a xorshift generator (any fixed values will do).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// The product `[m, k] x [k, n]` that [`run`] times.
struct Case {
    x: Vec<f32>,
    w: PackedWeight,
    m: usize,
    k: usize,
    n: usize,
}

static CASE: Mutex<Option<Case>> = Mutex::new(None);

/// Makes the `[m, k] x [k, n]` case with random values.
#[unsafe(no_mangle)]
pub extern "C" fn setup(m: usize, k: usize, n: usize) {
    let w = PackedWeight::borrowed(Arc::new(random(k * n, 2)), k, n, Some(&random(n, 3)));
    *CASE.lock().unwrap() = Some(Case {
        x: random(m * k, 1),
        w,
        m,
        k,
        n,
    });
}

/// Runs the product `reps` times; returns a value of the output so none is optimised away.
#[unsafe(no_mangle)]
pub extern "C" fn run(reps: u32) -> f32 {
    let guard = CASE.lock().unwrap();
    let c = guard.as_ref().expect("setup first");
    let mut total = 0.0;
    for _ in 0..reps {
        let out = ColumnWriter::new(c.m, 0..c.n);
        let rows = PackedRows::new(&c.x, c.m, c.k);
        out.write(&rows, &c.w, 0..c.n, Activation::Identity, None);
        total += out.into_vec()[c.n / 2];
    }
    total
}
