// The page's CPU path against onnxruntime-web on the same image tower, in one headless
// Chromium run (issue 12, item 3). Both run the same random-init ViT-B/32 weights:
//   monoscope:        the page (dist/, `?backend=cpu`) loads the HF checkpoint in MODEL_DIR
//                     and embeds a 224x224 PNG: batch 1 through the page's own path
//                     (`embed_image`, one image per forward pass) and batch B through
//                     `embed_images` (B images in one forward pass). Decoding and
//                     preprocessing the PNG are inside monoscope's time (about 1%).
//   onnxruntime-web:  MODEL_DIR/image_tower.onnx (exported from the same weights by
//                     `scripts/bench_reference.py --export-image-onnx MODEL_DIR`), wasm
//                     execution provider, graph optimisation "all", on random
//                     [B, 3, 224, 224] pixels.
// The page's wasm runs on one thread (wasm threads need a nightly toolchain), so ORT gets
// numThreads 1 for the like-for-like ratio; with --ort-threads 2 it also runs with two
// threads, which needs a cross-origin-isolated page (the server below sends COOP/COEP).
// With --engines N the page also runs with `?engines=N`: N engine workers, each with its
// own copy of the model, share every batch by whole images, and cut a batch of one image's
// pass between them by output columns (the workers swap their columns four times a layer:
// www/js/engine.js splitImage). Its ratio is against ORT with N threads (pass --ort-threads
// N too). That page also times the pass cut by columns, cut by token rows (one swap of keys
// and values a layer) and on one engine, alternating, and prints where each part's time
// goes (worker.js split_run's timing).
// The site has two wasm builds (www/worker.js): relaxed SIMD, which the page picks where the
// browser has it, and SIMD128. --wasm both (default) runs the page with each (?wasm=relaxed,
// ?wasm=simd128); --wasm auto|relaxed|simd128 runs one.
// Prints ms per image (median of --iters calls after a warm-up) and the ratios
// monoscope speed / ORT speed, each against ORT with the same thread count.
// --warmup N: untimed calls before each timed series, on both sides (default 1). With two
// engine workers on two cores the first split passes run slower (V8 compiles the hot wasm
// functions' optimised code on background threads, which then compete with the workers):
// 145, 131, 118, 127, 123, 114 ms and then 112-117 for the same image on one fresh page.
//   node scripts/bench_web.mjs MODEL_DIR [--batch 8] [--iters 5] [--warmup 1] [--ort-threads 2] [--engines 2] [--wasm both] [--json OUT]
// Needs `trunk build --release` (dist/), `npm ci` (onnxruntime-web, playwright-core) and
// Chromium. MODEL_DIR: e.g. the one `scripts/extract_reference.py --work W` makes (W/vit-b-32).

import { readFileSync, writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { MIME_TYPES } from "../tests/browser/static-server.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DIST = path.resolve(ROOT, process.env.MONOSCOPE_DIST || "dist");
const ORT_DIST = path.join(ROOT, "node_modules/onnxruntime-web/dist");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"];

function args() {
  const a = { batch: 8, iters: 5, warmup: 1, ortThreads: [1], engines: [1], wasm: ["relaxed", "simd128"], json: null, model: null };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    if (v[i] === "--batch") a.batch = Number(v[++i]);
    else if (v[i] === "--iters") a.iters = Number(v[++i]);
    else if (v[i] === "--warmup") a.warmup = Number(v[++i]);
    else if (v[i] === "--ort-threads") a.ortThreads = [1, Number(v[++i])];
    else if (v[i] === "--engines") a.engines = [1, Number(v[++i])];
    else if (v[i] === "--json") a.json = v[++i];
    else if (v[i] === "--wasm") {
      const w = v[++i];
      if (!["both", "auto", "relaxed", "simd128"].includes(w)) throw new Error(`--wasm takes both, auto, relaxed or simd128, not ${w}`);
      a.wasm = w === "both" ? ["relaxed", "simd128"] : [w];
    }
    else if (!a.model) a.model = path.resolve(v[i]);
    else throw new Error(`unknown argument ${v[i]}`);
  }
  if (!a.model) throw new Error("usage: node scripts/bench_web.mjs MODEL_DIR [--batch 8] [--iters 5] [--warmup 1] [--ort-threads 2] [--engines 2] [--wasm both] [--json OUT]");
  if (!(Number.isInteger(a.warmup) && a.warmup >= 1)) throw new Error(`--warmup takes a whole number >= 1, not ${a.warmup}`);
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "image_tower.onnx"]) {
    if (!existsSync(path.join(a.model, f))) throw new Error(`${path.join(a.model, f)} is missing (see the header of this script)`);
  }
  if (!existsSync(path.join(DIST, "index.html"))) throw new Error("dist/ is missing: run `trunk build --release`");
  if (!existsSync(ORT_DIST)) throw new Error("node_modules/onnxruntime-web is missing: run `npm ci`");
  return a;
}

// dist/ at /, the model at /bench/, onnxruntime-web at /ort/; cross-origin isolated so that
// ORT may use threads.
function serve(model) {
  const mounts = [["/bench/", model], ["/ort/", ORT_DIST], ["/", DIST]];
  const server = createServer((req, res) => {
    let rel = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    if (rel.endsWith("/")) rel += "index.html";
    const [prefix, dir] = mounts.find(([p]) => rel.startsWith(p));
    const file = path.resolve(dir, "." + rel.slice(prefix.length - 1));
    if (!file.startsWith(dir)) return res.writeHead(403).end();
    let body;
    try {
      body = readFileSync(file);
    } catch {
      return res.writeHead(404).end();
    }
    res.writeHead(200, {
      "content-type": MIME_TYPES[path.extname(file)] || "application/octet-stream",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
      "cross-origin-resource-policy": "same-origin",
    });
    res.end(body);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

async function monoscope(browser, origin, a, engines, wasm) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(`${origin}/?backend=cpu&model=/bench/&bundle=none&engines=${engines}&wasm=${wasm}`);
  await page.waitForFunction(() => window.__monoscope?.state === "ready" || window.__monoscope?.state === "error", null, { timeout: 10 * 60 * 1000 });
  const state = await page.evaluate(() => ({ state: window.__monoscope.state, error: window.__monoscope.error, wasm: window.__monoscope.wasm }));
  if (state.state !== "ready") throw new Error(`the page did not load the model: ${state.error}`);
  // Helper engines load the model after the page is ready.
  await page.waitForFunction((n) => window.__monoscope.engines?.parallelism === n, engines, { timeout: 10 * 60 * 1000 });
  const r = await page.evaluate(
    async ({ batch, iters, warmup }) => {
      const dbg = window.__monoscopeDebug;
      // A 224x224 PNG: no resize before the centre crop.
      const c = new OffscreenCanvas(224, 224);
      const g = c.getContext("2d");
      for (let i = 0; i < 64; i++) {
        g.fillStyle = `hsl(${i * 37}, 70%, 50%)`;
        g.fillRect((i * 53) % 200, (i * 31) % 200, 24, 24);
      }
      const bytes = await (await c.convertToBlob({ type: "image/png" })).arrayBuffer();
      const b1 = await dbg.timeEmbedImages(bytes, 1, iters, warmup);
      const split = window.__monoscope.engines.splitPasses;
      // With several engines, one image cut between them by output columns (the page's way)
      // and by token rows, against the same image on the main engine alone, alternating in
      // this page (the host's speed drifts between page loads).
      let paired = null;
      if (window.__monoscope.engines.parallelism > 1) {
        const ms = { cols: [], rows: [], whole: [] };
        const timings = { cols: [], rows: [] }; // each split pass's timing per part (worker.js split_run)
        // With each part's total (the sum of its phases).
        const sum = (t) => Object.values(t).reduce((x, y) => x + y, 0);
        for (let i = 0; i < iters; i++) {
          for (const how of ["cols", "rows", "whole"]) {
            const t0 = performance.now();
            await dbg.analyzeImage(bytes, how === "whole" ? { whole: true } : { cut: how });
            ms[how].push(performance.now() - t0);
            if (how !== "whole") timings[how].push(window.__monoscope.engines.splitTiming.map((t) => ({ ...t, total: sum(t) })));
          }
        }
        const median = (v) => v.sort((x, y) => x - y)[Math.floor(v.length / 2)];
        // Per cut and part, each phase's median over the passes.
        const parts = (list) =>
          list[0].map((_, p) => Object.fromEntries(Object.keys(list[0][p]).map((k) => [k, median(list.map((t) => t[p][k]))])));
        paired = {
          cols: median(ms.cols),
          rows: median(ms.rows),
          whole: median(ms.whole),
          parts: { cols: parts(timings.cols), rows: parts(timings.rows) },
        };
      }
      return { b1, bN: await dbg.timeEmbedImages(bytes, batch, iters, warmup), split, paired };
    },
    { batch: a.batch, iters: a.iters, warmup: a.warmup },
  );
  await page.close();
  // With several engines every batch-1 call (a warm-up and the timed ones) must have split.
  if (engines > 1 && r.split < a.iters + a.warmup) throw new Error(`only ${r.split} of the batch-1 passes were split between the engines`);
  return { ...r, build: state.wasm };
}

async function ort(browser, origin, a, threads) {
  const page = await browser.newPage();
  await page.goto(`${origin}/ort/ort.wasm.min.mjs`); // any same-origin page, cross-origin isolated
  const r = await page.evaluate(
    async ({ batch, iters, warmup, threads }) => {
      const ort = await import("/ort/ort.wasm.min.mjs");
      ort.env.wasm.numThreads = threads;
      ort.env.wasm.wasmPaths = "/ort/";
      const session = await ort.InferenceSession.create("/bench/image_tower.onnx", {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
      const perImage = async (b) => {
        const data = new Float32Array(b * 3 * 224 * 224);
        for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 12.9898) * 2;
        const feeds = { pixel_values: new ort.Tensor("float32", data, [b, 3, 224, 224]) };
        for (let i = 0; i < warmup; i++) await session.run(feeds);
        const ms = [];
        for (let i = 0; i < iters; i++) {
          const t0 = performance.now();
          await session.run(feeds);
          ms.push((performance.now() - t0) / b);
        }
        return ms.sort((x, y) => x - y)[Math.floor(iters / 2)];
      };
      return { isolated: self.crossOriginIsolated, b1: await perImage(1), bN: await perImage(batch) };
    },
    { batch: a.batch, iters: a.iters, warmup: a.warmup, threads },
  );
  await page.close();
  return r;
}

const a = args();
const server = await serve(a.model);
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
try {
  const rows = [];
  for (const wasm of a.wasm) {
    for (const n of a.engines) {
      const r = await monoscope(browser, origin, a, n, wasm);
      const who = `monoscope (page, CPU backend, wasm ${r.build}, ${n > 1 ? `${n} engine workers` : "1 thread"})`;
      rows.push({ who, threads: n, ...r });
    }
  }
  for (const t of a.ortThreads) rows.push({ who: `onnxruntime-web (wasm, ${t} thread${t > 1 ? "s" : ""})`, threads: t, ort: true, ...(await ort(browser, origin, a, t)) });
  console.log(`random-init ViT-B/32 image tower, headless Chromium, ms per image (median of ${a.iters}, after ${a.warmup} untimed)`);
  console.log(`| run | batch 1 | batch ${a.batch} | speed vs ORT with as many threads, batch 1 | batch ${a.batch} |`);
  console.log("|---|---:|---:|---:|---:|");
  for (const r of rows) {
    const ref = rows.find((x) => x.ort && x.threads === r.threads);
    const ratio = (k) => (ref ? `${(ref[k] / r[k]).toFixed(2)}x` : "–");
    console.log(`| ${r.who} | ${r.b1.toFixed(0)} | ${r.bN.toFixed(0)} | ${ratio("b1")} | ${ratio("bN")} |`);
  }
  for (const r of rows.filter((x) => x.paired)) {
    const p = r.paired;
    const x = (ms) => (p.whole / ms).toFixed(2);
    console.log(
      `${r.who}, batch 1 in the same page: cut by columns ${p.cols.toFixed(0)} ms (${x(p.cols)}x), by token rows ${p.rows.toFixed(0)} ms (${x(p.rows)}x), on one engine ${p.whole.toFixed(0)} ms`,
    );
    const f = (v) => v.toFixed(1);
    for (const cut of ["cols", "rows"]) {
      p.parts[cut].forEach((t, i) =>
        console.log(`  cut by ${cut}, part ${i}, ms (medians): decode and first input ${f(t.open)}, computing its shares ${f(t.share)}, waiting for the other parts ${f(t.wait)}, taking theirs ${f(t.gather)}, report ${f(t.report)}, total ${f(t.total)}`),
      );
    }
  }
  if (a.json) writeFileSync(a.json, JSON.stringify({ batch: a.batch, iters: a.iters, rows }, null, 1));
} finally {
  await browser.close();
  server.close();
}
