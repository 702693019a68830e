// The packed GEMM's WebAssembly kernels (issue 12): tests/wasm/gemm_check.rs, which
// includes src/base/gemm/, compiled with the page's target features and optimisation level
// and run in Node's V8 (Chromium's engine). Twice, as the site ships two builds
// (scripts/build_relaxed.sh): SIMD128 (mul + add) and relaxed SIMD (the `relaxed-simd`
// feature: f32x4.relaxed_madd). Needs rustc with the wasm32-unknown-unknown target
// (scripts/install-tools.sh adds it).

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";
import { RELAXED_PROBE, hasRelaxedSimd } from "../../www/js/wasm-features.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BUILDS = {
  simd128: { cfg: [], relaxed: false },
  relaxed: { cfg: ["--cfg", 'feature="relaxed-simd"'], relaxed: true },
};
const gemm = {};
// Whether each module validates in an engine without relaxed SIMD (Node 20 before the flag
// below), or null where this Node has relaxed SIMD on by default.
const validatesWithout = {};
before(async () => {
  const bytes = {};
  for (const [name, { cfg }] of Object.entries(BUILDS)) {
    const wasm = path.join(ROOT, `tests/out/gemm_check_${name}.wasm`);
    mkdirSync(path.dirname(wasm), { recursive: true });
    // The page's settings: SIMD128 (.cargo/config.toml) and the optimisation level (the
    // wasm-release profile's opt-level 2 for monoscope's own crate).
    execFileSync("rustc", [
      "--edition", "2024", "--crate-type", "cdylib", "--target", "wasm32-unknown-unknown",
      "-C", "target-feature=+simd128", "-C", "opt-level=2", "-C", "panic=abort", ...cfg,
      "-o", wasm, path.join(ROOT, "tests/wasm/gemm_check.rs"),
    ], { stdio: "inherit" });
    bytes[name] = readFileSync(wasm);
  }
  const probeWithout = hasRelaxedSimd();
  for (const name of Object.keys(BUILDS)) validatesWithout[name] = probeWithout ? null : WebAssembly.validate(bytes[name]);
  // Node 20's V8 (11.3) has relaxed SIMD behind this flag (Chromium has it on since 114);
  // it is read when a module is compiled. Newer Nodes ignore it.
  v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  assert.ok(hasRelaxedSimd(), "the page's probe finds relaxed SIMD (with the flag)");
  // A probe that validated anything would send every browser to the relaxed build.
  assert.equal(WebAssembly.validate(RELAXED_PROBE.map((b, i) => (i === RELAXED_PROBE.length - 3 ? 0x84 : b))), false,
    "the probe's module with another opcode in the same place (trunc_f64x2, whose types differ) is refused");
  for (const name of Object.keys(BUILDS)) gemm[name] = (await WebAssembly.instantiate(bytes[name], {})).instance.exports;
});

// The chain a build's kernel runs: SIMD128 always the unfused one; relaxed SIMD whichever
// this engine gives relaxed_madd, found from the products (1 fused, 0 not).
function chainOf(name, t) {
  if (name === "simd128") return 0;
  const fused = gemm.relaxed.products_differing(0, 1) === 0 ? 1 : 0;
  t?.diagnostic(`relaxed_madd runs ${fused ? "fused (one rounding a step)" : "as a multiply then an add"} in this V8`);
  return fused;
}

for (const [name, { relaxed }] of Object.entries(BUILDS)) {
  test(`${name}: the kernel runs in this build, on the layer's own weight`, (t) => {
    assert.equal(gemm[name].available(), 1, "SIMD128 compiled in");
    assert.equal(gemm[name].borrows(), 1, "no packed copy in the page");
    // The relaxed build has relaxed-SIMD instructions (an engine without them refuses it);
    // the SIMD128 build has none (it loads in every browser with WebAssembly SIMD).
    if (validatesWithout[name] === null) t.diagnostic("this Node has relaxed SIMD on by default: validation without it not checked");
    else assert.equal(validatesWithout[name], !relaxed, "validates in an engine without relaxed SIMD");
  });

  test(`${name}: every value is one chain in order, then the bias`, (t) => {
    const fused = chainOf(name, t);
    assert.equal(gemm[name].products_differing(0, fused), 0, "borrowed weight");
    assert.equal(gemm[name].products_differing(1, fused), 0, "packed copy");
    // The other chain differs somewhere, so matching one of them is a real check.
    assert.ok(gemm[name].products_differing(0, 1 - fused) > 0, "the two chains differ on these shapes");
  });

  test(`${name}: a window of columns is written where it belongs`, () => {
    assert.equal(gemm[name].window_differing(chainOf(name)), 0);
  });

  test(`${name}: quick_gelu and the residual are added after the bias`, () => {
    const milli = gemm[name].activation_error_milli(chainOf(name));
    assert.notEqual(milli, 0xffffffff, "large magnitudes saturate");
    assert.ok(milli <= 1000, `worst error ${milli / 1000} of the tolerance (1e-6 rel + 1e-6 abs)`);
  });
}
