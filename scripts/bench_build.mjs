// Time to a finished bundle built in the page against the native CLI on the same data
// (issue 11's benchmark): N demo-world scenes (folder layout) are built into a bundle in
// headless Chromium on the CPU backend (demo model), then `monoscope extract / train / analyze`
// run with the page's settings; prints each phase and the ratio page / CLI.
//   node scripts/bench_build.mjs [N=300]
// Needs `trunk build --release` (dist/) and the CLI built (`cargo build`), like the tests.

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { serveDir } from "../tests/browser/static-server.mjs";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DIST = path.resolve(ROOT, process.env.MONOSCOPE_DIST || "dist");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"];

const N = Number(process.argv[2] || 300);
const work = path.join(os.tmpdir(), `monoscope-bench-build-${N}`);
const env = { ...process.env, CARGO_TARGET_DIR: process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/monoscope/target") };
const cli = (...args) => execFileSync("cargo", ["run", "--quiet", "--", ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "inherit"] });
const timed = (f) => {
  const t0 = performance.now();
  f();
  return (performance.now() - t0) / 1000;
};

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const scenes = path.join(work, "scenes");
cli("world-images", "--count", String(N), "--seed", "7", "--out", scenes);
for (const e of JSON.parse(readFileSync(path.join(scenes, "index.json"), "utf8"))) {
  writeFileSync(path.join(scenes, e.file.replace(/\.png$/, ".txt")), `${e.caption}\n`);
}
const files = readdirSync(scenes)
  .filter((n) => /\.(png|txt)$/.test(n))
  .map((n) => path.join(scenes, n));

const server = await serveDir(DIST);
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
const page = await browser.newPage();
await page.goto(`${server.origin}/?backend=cpu&build=1`);
await page.waitForFunction(() => document.body.dataset.state === "ready", null, { timeout: 120_000 });
await page.setInputFiles("#build-files", files);
await page.waitForFunction(() => !document.getElementById("build-start").disabled, null, { timeout: 120_000 });
const t0 = performance.now();
await page.click("#build-start");
await page.waitForFunction(() => ["done", "error"].includes(window.__monoscope.apps.build?.phase), null, { timeout: 60 * 60_000, polling: 500 });
const pageTotal = (performance.now() - t0) / 1000;
const b = await page.evaluate(() => window.__monoscope.apps.build);
await browser.close();
await server.close();
if (b.phase !== "done") throw new Error(`the page's build failed: ${b.error}`);

const s = b.settings;
const [emb, dict, bundle] = ["emb.safetensors", "dict", "bundle"].map((f) => path.join(work, f));
const native = {
  extract: timed(() => cli("extract", "--model", "assets/demo/clip", "--data", scenes, "--out", emb)),
  train: timed(() =>
    cli("train", "--embeddings", emb, "--kind", "topk", "--center", "--features", `${s.features}`, "--k", `${s.k}`, "--steps", `${s.steps}`, "--batch", `${s.batch}`, "--seed", `${s.seed}`, "--out", dict),
  ),
  analyse: timed(() => cli("analyze", "--model", "assets/demo/clip", "--dict", dict, "--embeddings", emb, "--center", "--out", bundle)),
};
const row = (name, p, n) => console.log(`${name.padEnd(10)} ${p.toFixed(1).padStart(8)} ${n.toFixed(1).padStart(8)} ${(p / n).toFixed(2).padStart(7)}`);
console.log(`bundle from ${N} demo pairs, CPU backend (settings ${JSON.stringify(s)}), seconds:`);
console.log(`${"phase".padEnd(10)} ${"page".padStart(8)} ${"CLI".padStart(8)} ${"page/CLI".padStart(7)}`);
row("extract", b.seconds.extract, native.extract);
row("train", b.seconds.train, native.train);
row("analyse", b.seconds.analyse, native.analyse);
row("total", pageTotal, native.extract + native.train + native.analyse);
console.log(`page: ${(b.embedded / b.seconds.extract).toFixed(1)} pairs/s, ${(b.status.step / b.seconds.train).toFixed(0)} steps/s; CLI times include process start and model load`);
