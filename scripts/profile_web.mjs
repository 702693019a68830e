// Where the page's engine spends its time in the browser (issue 12): a V8 sampling profile
// of the engine's wasm embedding batches of images on the CPU backend, summed per function
// (self time), in headless Chromium. With --split N: one image's pass cut between N engines
// (www/js/engine.js splitImage, which the page runs on N workers) as the page cuts it (--cut
// auto: output columns where every engine gets a head, else token rows; --cut cols | rows to
// choose), the parts run in turn on this thread, with each part's time in
// `share` and `gather` summed per round (what one worker computes between two exchanges).
//
// The page runs the engine in a dedicated worker, which Playwright's CDP sessions cannot
// attach to, so this loads the same wasm module on a page's main thread and calls the same
// `Engine` methods the worker calls (`Engine.create`, `embed_images`). The production build
// runs wasm-opt, which drops function names; this takes trunk's wasm-bindgen output of that
// same build ($CARGO_TARGET_DIR/wasm-bindgen/release: names kept, before wasm-opt's size
// passes); with --wasm relaxed the relaxed-SIMD build's (wasm-bindgen/wasm-relaxed, written
// by scripts/build_relaxed.sh).
//   node scripts/profile_web.mjs MODEL_DIR [--batch 8 | --split N [--cut auto|cols|rows]] [--iters 3] [--top 30] [--wasm simd128|relaxed] [--json OUT]
// Needs `trunk build --release` first (its wasm-bindgen output in $CARGO_TARGET_DIR) and
// Chromium. MODEL_DIR: an HF CLIP folder, e.g. the random-init
// ViT-B/32 of `scripts/extract_reference.py --work W` (W/vit-b-32).

import { readFileSync, writeFileSync, existsSync, mkdirSync, copyFileSync } from "node:fs";
import path from "node:path";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serveDir } from "../tests/browser/static-server.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/monoscope/target");
const BOUND_DIRS = { simd128: "wasm-bindgen/release", relaxed: "wasm-bindgen/wasm-relaxed" };
let BOUND = path.join(TARGET, BOUND_DIRS.simd128);
const PKG = path.join(ROOT, "tests/out/profile-web");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"];
// Sampling interval in microseconds: ~10k samples over a few seconds of work.
const SAMPLE_US = 200;

function args() {
  const a = { batch: 8, split: 0, cut: "auto", iters: 3, top: 30, json: null, model: null };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    if (v[i] === "--batch") a.batch = Number(v[++i]);
    else if (v[i] === "--split") a.split = Number(v[++i]);
    else if (v[i] === "--cut") a.cut = v[++i];
    else if (v[i] === "--iters") a.iters = Number(v[++i]);
    else if (v[i] === "--top") a.top = Number(v[++i]);
    else if (v[i] === "--json") a.json = v[++i];
    else if (v[i] === "--wasm") {
      const w = v[++i];
      if (!(w in BOUND_DIRS)) throw new Error(`--wasm takes simd128 or relaxed, not ${w}`);
      BOUND = path.join(TARGET, BOUND_DIRS[w]);
    }
    else if (!a.model) a.model = path.resolve(v[i]);
    else throw new Error(`unknown argument ${v[i]}`);
  }
  if (!a.model) throw new Error("usage: node scripts/profile_web.mjs MODEL_DIR [--batch 8 | --split N [--cut auto|cols|rows]] [--iters 3] [--top 30] [--wasm simd128|relaxed] [--json OUT]");
  if (!["auto", "cols", "rows"].includes(a.cut)) throw new Error(`--cut takes auto, cols or rows, not ${a.cut}`);
  if (a.split && !(a.split >= 2 && Number.isInteger(a.split))) throw new Error(`--split takes a number of engines >= 2, not ${a.split}`);
  if (a.split) a.batch = 1;
  for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) {
    if (!existsSync(path.join(a.model, f))) throw new Error(`${path.join(a.model, f)} is missing`);
  }
  if (!existsSync(path.join(BOUND, "monoscope_bg.wasm"))) throw new Error(`${BOUND}/monoscope_bg.wasm is missing: run \`trunk build --release\` first`);
  return a;
}

// The wasm with its name section, bound for a page.
function bind() {
  mkdirSync(PKG, { recursive: true });
  for (const f of ["monoscope.js", "monoscope_bg.wasm"]) copyFileSync(path.join(BOUND, f), path.join(PKG, f));
  writeFileSync(path.join(PKG, "index.html"), "<!doctype html><title>profile</title>\n");
}

// Rust's legacy mangling (_ZN 3foo 3bar 17h<hash> E) to foo::bar; other names as they are.
function demangle(name) {
  const m = /^_?_ZN(.*)E$/.exec(name);
  // V8 shows most names demangled already: drop the hash and crate disambiguators.
  if (!m) return name.replace(/::h[0-9a-f]{16}$/, "").replace(/\[[0-9a-f]{16}\]/g, "");
  const parts = [];
  let s = m[1];
  while (s.length) {
    const n = /^(\d+)/.exec(s);
    if (!n) break;
    const len = Number(n[1]);
    parts.push(s.slice(n[1].length, n[1].length + len));
    s = s.slice(n[1].length + len);
  }
  if (parts.length && /^h[0-9a-f]{16}$/.test(parts[parts.length - 1])) parts.pop();
  return parts
    .join("::")
    .replace(/\$LT\$/g, "<")
    .replace(/\$GT\$/g, ">")
    .replace(/\$u20\$/g, " ")
    .replace(/\$C\$/g, ",")
    .replace(/\$RF\$/g, "&")
    .replace(/\$BP\$/g, "*")
    .replace(/\$u7b\$/g, "{")
    .replace(/\$u7d\$/g, "}")
    .replace(/\.\./g, "::");
}

// A coarse kind per function, to read the profile at a glance.
function kindOf(name) {
  // monoscope's own GEMM (base::gemm: the linear layers, with their bias, quick_gelu and
  // residual pass inlined) apart from the gemm crate's (flex's matmuls: attention).
  if (/monoscope::base::gemm|monoscope::clip::packed::rows/.test(name)) return "linear layers (monoscope's GEMM and its fused pass)";
  if (/gemm/.test(name)) return "GEMM (gemm crate)";
  if (/exp|expf/.test(name)) return "exp (softmax, sigmoid)";
  if (/memcpy|memmove|memset/.test(name)) return "memory copies";
  if (/dlmalloc|alloc|free/.test(name)) return "allocator";
  if (/burn_flex/.test(name)) return "burn-flex element-wise and layout ops";
  if (/image|png|jpeg|zune|resize/.test(name)) return "image decode and preprocessing";
  return "other";
}

const a = args();
bind();
const server = await serveDir(PKG, { mounts: { "/bench/": a.model } });
const origin = server.origin;
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(`${origin}/index.html`);
  // Load the model and warm up (first-call allocations) before profiling.
  await page.evaluate(async ({ batch, split, cut }) => {
    const m = await import("/monoscope.js");
    await m.default({ module_or_path: "/monoscope_bg.wasm" });
    const bytes = async (f) => new Uint8Array(await (await fetch(`/bench/${f}`)).arrayBuffer());
    const [config, weights, tokenizer] = await Promise.all(["config.json", "model.safetensors", "tokenizer.json"].map(bytes));
    const create = () => m.Engine.create("cpu", config, weights, tokenizer, () => {});
    const engine = await create();
    const c = new OffscreenCanvas(224, 224);
    const g = c.getContext("2d");
    for (let i = 0; i < 64; i++) {
      g.fillStyle = `hsl(${i * 37}, 70%, 50%)`;
      g.fillRect((i * 53) % 200, (i * 31) % 200, 24, 24);
    }
    const png = new Uint8Array(await (await c.convertToBlob({ type: "image/png" })).arrayBuffer());
    window.__run = () => engine.embed_images(Array.from({ length: batch }, () => png));
    if (split) {
      // The page's split pass (engine.js runSplit, worker.js split_run), its
      // parts in turn on this thread.
      const engines = [engine];
      while (engines.length < split) engines.push(await create());
      // Counted from the first timed pass on (window.__phases is made after the warm-up).
      const count = (phase, ms) => {
        if (window.__phases) window.__phases[phase] += ms;
      };
      const timed = (phase, f) => {
        const t0 = performance.now();
        const r = f();
        count(phase, performance.now() - t0);
        return r;
      };
      window.__run = async () => {
        const passes = engines.map((e, p) => e.split_image(png, p, split, cut));
        for (;;) {
          const shares = passes.map((p) => timed("share", () => p.share()));
          passes.forEach((p, i) => timed("gather", () => p.gather(shares.map((v, j) => (j === i ? null : v)))));
          count("rounds", 1);
          if (passes[0].done()) break;
        }
        for (const p of passes.slice(1)) p.free();
        return passes[0].report();
      };
    }
    await window.__run();
    if (split) window.__phases = { share: 0, gather: 0, rounds: 0 };
  }, { batch: a.batch, split: a.split, cut: a.cut });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: SAMPLE_US });
  await cdp.send("Profiler.start");
  const ms = await page.evaluate(async (iters) => {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) await window.__run();
    return performance.now() - t0;
  }, a.iters);
  const { profile } = await cdp.send("Profiler.stop");

  // Self time per function: samples whose leaf is that node, weighted by the time deltas.
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] || 0;
    const name = demangle(byId.get(id).callFrame.functionName || "(anonymous)");
    self.set(name, (self.get(name) || 0) + dt);
    total += dt;
  });
  const rows = [...self.entries()].sort((x, y) => y[1] - x[1]);
  const kinds = new Map();
  for (const [name, t] of rows) kinds.set(kindOf(name), (kinds.get(kindOf(name)) || 0) + t);
  const pct = (t) => ((100 * t) / total).toFixed(1);
  if (a.split) {
    const ph = await page.evaluate(() => window.__phases);
    const per = (t) => (t / ph.rounds / a.split).toFixed(2);
    console.log(`${a.iters} x one image cut by ${a.cut} between ${a.split} engines, its parts in turn on the page's main thread: ${(ms / a.iters).toFixed(0)} ms per pass, all parts (profiler on)`);
    console.log(`per part and round: share ${per(ph.share)} ms, gather ${per(ph.gather)} ms; outside the rounds (decode, patch embedding, report) ${((ms - ph.share - ph.gather) / a.iters / a.split).toFixed(1)} ms per part and pass`);
  } else {
    console.log(`${a.iters} x embed_images(batch ${a.batch}) on the page's main thread: ${(ms / (a.iters * a.batch)).toFixed(0)} ms per image (profiler on)`);
  }
  console.log("\n| kind | self time |\n|---|---:|");
  for (const [k, t] of [...kinds.entries()].sort((x, y) => y[1] - x[1])) console.log(`| ${k} | ${pct(t)}% |`);
  console.log(`\n| function (top ${a.top}, self time) | % |\n|---|---:|`);
  for (const [name, t] of rows.slice(0, a.top)) console.log(`| \`${name.slice(0, 140)}\` | ${pct(t)} |`);
  if (a.json) {
    const out = { batch: a.batch, split: a.split, iters: a.iters, msPerImage: ms / (a.iters * a.batch), kinds: Object.fromEntries(kinds), functions: rows.slice(0, 200) };
    writeFileSync(a.json, JSON.stringify(out, null, 1));
  }
} finally {
  await browser.close();
  await server.close();
}
