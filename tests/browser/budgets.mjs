// Budgets of the web app, measured and printed (not asserted: timings depend on the machine).
//   node tests/browser/budgets.mjs        (scripts/test.sh runs it after the browser tests)
//
// - cold open to first result: a fresh Chromium (new profile: no HTTP cache, no compiled-wasm
//   cache) opens the default page with ?backend=cpu; the time from navigation start to the
//   first analysed input (performance.now() when the page records it). Median of 3 runs.
//   Target: < 3 s on headless Chromium here.
// - wasm size: dist/monoscope_bg.wasm and dist/relaxed/monoscope_bg.wasm (the two builds; a page
//   downloads one) after trunk's wasm-opt, raw and gzip -9. Target < 6 MB each.
// Writes tests/out/budgets.json too.

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { gzipSync, constants } from "node:zlib";
import path from "node:path";
import * as h from "./helpers.mjs";

const RUNS = Number(process.env.MONOSCOPE_BUDGET_RUNS || 3);
const TARGET_MS = 3000;
const TARGET_GZ = 6e6;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

h.checkDist();
mkdirSync(h.OUT, { recursive: true });
const server = await h.startServer();
const runs = [];
try {
  for (let i = 0; i < RUNS; i++) {
    const browser = await h.startBrowser();
    try {
      const { page } = await h.newPage(browser, null);
      const t0 = Date.now();
      await page.goto(`${server.origin}/?backend=cpu`);
      await page.waitForFunction(() => window.__monoscope?.firstResultMs != null || document.body.dataset.state === "error", null, { timeout: 120000 });
      const r = await page.evaluate(() => ({
        first: window.__monoscope.firstResultMs,
        error: window.__monoscope.error,
        backend: window.__monoscope.backend,
        nav: performance.getEntriesByType("navigation")[0]?.responseEnd,
      }));
      if (r.first == null) throw new Error(`page error: ${r.error}`);
      runs.push({ firstResultMs: r.first, wallMs: Date.now() - t0, backend: r.backend });
    } finally {
      await browser.close();
    }
  }
} finally {
  await server.close();
}

const builds = ["monoscope_bg.wasm", "relaxed/monoscope_bg.wasm"].map((file) => {
  const bytes = readFileSync(path.join(h.DIST, file));
  return { file, bytes: bytes.length, gzip: gzipSync(bytes, { level: constants.Z_BEST_COMPRESSION }).length };
});
// The larger of the two is the budget's figure.
const { bytes: wasmBytes, gzip: gz } = builds.reduce((a, b) => (b.gzip > a.gzip ? b : a));
const result = {
  cold_open_to_first_result_ms: Math.round(median(runs.map((r) => r.firstResultMs))),
  runs_ms: runs.map((r) => Math.round(r.firstResultMs)),
  backend: runs[0]?.backend,
  wasm_bytes: wasmBytes,
  wasm_gzip_bytes: gz,
  wasm_builds: builds,
};
writeFileSync(path.join(h.OUT, "budgets.json"), JSON.stringify(result, null, 2) + "\n");
const verdict = (ok) => (ok ? "within target" : "OVER TARGET");
console.log(
  `budget: cold open to first result (demo model, ${result.backend} backend, headless Chromium, median of ${RUNS} fresh browsers): ` +
    `${result.cold_open_to_first_result_ms} ms (runs ${result.runs_ms.join(", ")} ms; target < ${TARGET_MS} ms: ${verdict(result.cold_open_to_first_result_ms < TARGET_MS)})`,
);
console.log(
  `budget: wasm after wasm-opt (the larger of ${builds.map((b) => b.file).join(" and ")}) ${(wasmBytes / 1e6).toFixed(2)} MB, gzip -9 ${gz} bytes = ${(gz / 1e6).toFixed(2)} MB = ${(gz / 2 ** 20).toFixed(2)} MiB ` +
    `(target < 6 MB: ${verdict(gz < TARGET_GZ)}; < 6 MiB: ${verdict(gz < 6 * 2 ** 20)})`,
);
