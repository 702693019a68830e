// The page's GEMM alone in headless Chromium (issue 12): scripts/wasm_gemm_bench.rs (which
// includes src/base/gemm/) compiled for wasm32 with SIMD128, for each build of the site
// (SIMD128; relaxed SIMD, the cargo feature `relaxed-simd`) at each optimisation level
// asked (default "s" and 2), then `ColumnWriter::write` on a borrowed weight timed at
// ViT-B/32's shapes in one page: GFLOP/s, median of 5 timings of about 2 GFLOP each.
//   node scripts/bench_wasm_gemm.mjs [--opt s,2] [--json OUT]
// Needs rustc's wasm32-unknown-unknown target and Chromium (scripts/install-tools.sh).

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const OUT = path.join(ROOT, "tests/out/bench-wasm-gemm");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHAPES = [
  [50, 768, 3072], // fc1 at batch 1 (50 tokens)
  [50, 768, 768], // q, k, v, out at batch 1
  [400, 768, 768], // the same at batch 8
];

const a = { opt: ["s", "2"], json: null };
const v = process.argv.slice(2);
for (let i = 0; i < v.length; i++) {
  if (v[i] === "--opt") a.opt = v[++i].split(",");
  else if (v[i] === "--json") a.json = v[++i];
  else throw new Error(`unknown argument ${v[i]}; usage: node scripts/bench_wasm_gemm.mjs [--opt s,2] [--json OUT]`);
}

mkdirSync(OUT, { recursive: true });
const builds = [];
for (const [name, cfg] of [["SIMD128", []], ["relaxed SIMD", ["--cfg", 'feature="relaxed-simd"']]]) {
  for (const opt of a.opt) {
    const file = path.join(OUT, `${name.replace(" ", "-")}-O${opt}.wasm`);
    execFileSync("rustc", [
      "--edition", "2024", "--crate-type", "cdylib", "--target", "wasm32-unknown-unknown",
      "-C", "target-feature=+simd128", "-C", `opt-level=${opt}`, "-C", "panic=abort", ...cfg,
      "-o", file, path.join(ROOT, "scripts/wasm_gemm_bench.rs"),
    ], { stdio: ["ignore", "ignore", "inherit"] });
    builds.push({ name, opt, file });
  }
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
const rows = [];
try {
  const page = await browser.newPage();
  for (const b of builds) {
    const gflops = await page.evaluate(
      async ({ b64, shapes }) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const e = (await WebAssembly.instantiate(bytes, {})).instance.exports;
        const out = [];
        for (const [m, k, n] of shapes) {
          e.setup(m, k, n);
          e.run(1);
          const flop = 2 * m * k * n;
          const reps = Math.max(1, Math.round(2e9 / flop));
          const ms = [];
          for (let i = 0; i < 5; i++) {
            const t0 = performance.now();
            e.run(reps);
            ms.push((performance.now() - t0) / reps);
          }
          ms.sort((x, y) => x - y);
          out.push(flop / ms[2] / 1e6);
        }
        return out;
      },
      { b64: readFileSync(b.file).toString("base64"), shapes: SHAPES },
    );
    rows.push({ build: b.name, opt: b.opt, gflops });
  }
} finally {
  await browser.close();
}
console.log(`the page's GEMM in headless Chromium ${browser.version()}, GFLOP/s (median of 5)`);
console.log(`| build | opt-level | ${SHAPES.map((s) => s.join(" x ")).join(" | ")} |`);
console.log(`|---|---|${SHAPES.map(() => "---:").join("|")}|`);
for (const r of rows) console.log(`| ${r.build} | ${r.opt} | ${r.gflops.map((g) => g.toFixed(1)).join(" | ")} |`);
if (a.json) writeFileSync(a.json, JSON.stringify({ shapes: SHAPES, rows }, null, 1));
