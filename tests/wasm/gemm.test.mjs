// The packed GEMM's SIMD128 kernel in WebAssembly (issue 12): tests/wasm/gemm_check.rs,
// which includes src/base/gemm/, compiled with the page's target features and
// optimisation level and run in Node's V8 (Chromium's engine). Needs rustc with the
// wasm32-unknown-unknown target (scripts/install-tools.sh adds it).

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WASM = path.join(ROOT, "tests/out/gemm_check.wasm");
let gemm;

before(async () => {
  mkdirSync(path.dirname(WASM), { recursive: true });
  // The page's settings: SIMD128 (.cargo/config.toml) and size-optimised code (the
  // wasm-release profile's opt-level "s" for monoscope's own crate).
  execFileSync("rustc", [
    "--edition", "2024", "--crate-type", "cdylib", "--target", "wasm32-unknown-unknown",
    "-C", "target-feature=+simd128", "-C", "opt-level=s", "-C", "panic=abort",
    "-o", WASM, path.join(ROOT, "tests/wasm/gemm_check.rs"),
  ], { stdio: "inherit" });
  const { instance } = await WebAssembly.instantiate(readFileSync(WASM), {});
  gemm = instance.exports;
});

test("the kernel runs in this build, on the layer's own weight", () => {
  assert.equal(gemm.available(), 1, "SIMD128 compiled in");
  assert.equal(gemm.borrows(), 1, "no packed copy in the page");
});

test("every value is one multiply-then-add chain in order, then the bias", () => {
  assert.equal(gemm.products_differing(0), 0, "borrowed weight");
  assert.equal(gemm.products_differing(1), 0, "packed copy");
});

test("a window of columns is written where it belongs", () => {
  assert.equal(gemm.window_differing(), 0);
});

test("quick_gelu and the residual are added after the bias", () => {
  const milli = gemm.activation_error_milli();
  assert.notEqual(milli, 0xffffffff, "large magnitudes saturate");
  assert.ok(milli <= 1000, `worst error ${milli / 1000} of the tolerance (1e-6 rel + 1e-6 abs)`);
});
