// Real-size models in the page (issue 10): a random-init ViT-B/32 made by `monoscope init`
// (f32 by scripts/test.sh in tests/out/vit-b-32-f32/, f16 with its feature bundle by
// tests/recipe.rs in tests/out/recipe/), loaded from this site and from local files on the CPU
// backend. Checks the page's embeddings against the CLI's (cosine >= 0.999, the same bound as
// the demo model's test: f32 reductions in another order on another backend), that load
// progress reached every byte and every tensor, that the wasm heap's peak stays within the
// page's own estimate, and that a model too large for a 32-bit wasm heap is refused from its
// config.json before its weights are requested, keeping the model the page had. Prints load
// time (files fetched or read and tensors placed), per-image and per-prompt ms (engine round
// trips, median of 3) and peak wasm memory (the README quotes them).

import { test, before } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import path from "node:path";
import * as h from "./helpers.mjs";

const F32 = path.join(h.OUT, "vit-b-32-f32");
const F32_JSON = path.join(h.OUT, "native-vit-b-32-f32.json");
const RECIPE = path.join(h.OUT, "recipe");
const HUGE = path.join(h.OUT, "too-big-model");
const MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json"];
const BUNDLE_FILES = ["manifest.json", "features.json", "dictionary.safetensors"];

const env = h.suite({ "/big/": h.OUT });

function need(file, how) {
  assert.ok(existsSync(file), `${file} not found: ${how} (scripts/test.sh does it)`);
}

before(() => {
  need(path.join(F32, "model.safetensors"), "run `monoscope init --preset vit-b-32 --out tests/out/vit-b-32-f32`");
  need(path.join(RECIPE, "bundle/manifest.json"), "run `cargo test --test recipe`");
  // A ViT-B/32 with 400 vision layers (~2.9 G parameters, ~11.5 GB as f32): more than a 32-bit
  // wasm heap can hold. Its weights file is a stub the page must never ask for.
  mkdirSync(HUGE, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(F32, "config.json"), "utf8"));
  config.vision_config.num_hidden_layers = 400;
  writeFileSync(path.join(HUGE, "config.json"), JSON.stringify(config));
  writeFileSync(path.join(HUGE, "model.safetensors"), "never read");
  copyFileSync(path.join(F32, "tokenizer.json"), path.join(HUGE, "tokenizer.json"));
});

const mb = (b) => `${(b / 1e6).toFixed(0)} MB`;

// Load progress, wasm memory and per-call timings of the loaded model.
async function measure(page) {
  return page.evaluate(async () => {
    const dbg = window.__monoscopeDebug;
    const image = await (await fetch("assets/demo/images/scene-1.png")).arrayBuffer();
    const imageMs = await dbg.timeCalls("image", image, 3);
    const promptMs = await dbg.timeCalls("text", "a small blue triangle on the left", 3);
    return {
      firstResultMs: window.__monoscope.firstResultMs,
      imageMs,
      promptMs,
      peakBytes: await dbg.memoryBytes(),
      progress: window.__monoscope.loadProgress,
    };
  });
}

function report(t, what, m) {
  const line =
    `${what}: loaded in ${m.progress.ms.toFixed(0)} ms, ${m.imageMs.toFixed(0)} ms per image, ` +
    `${m.promptMs.toFixed(0)} ms per prompt, peak wasm memory ${mb(m.peakBytes)} (estimate ${mb(m.progress.plan.in_use_bytes + m.progress.plan.needed_bytes)})`;
  t.diagnostic(line);
}

// Embeddings of the page's default inputs against the CLI's, and the load progress.
function checkModel(r, native, m, files) {
  assert.equal(r.state, "ready", `page error: ${r.error}`);
  assert.match(r.model, /151\.28M parameters/);
  assert.ok(h.cosine(r.images[0].embedding, native.image_embeds[0]) >= h.MIN_COSINE, "image embedding vs CLI");
  for (let i = 0; i < native.texts.length; i++) {
    assert.equal(r.prompts[i].text, native.texts[i]);
    assert.ok(h.cosine(r.prompts[i].embedding, native.text_embeds[i]) >= h.MIN_COSINE, `prompt ${i} vs CLI`);
  }
  const { bytes, tensors, plan } = m.progress;
  if (files) {
    const total = MODEL_FILES.reduce((n, f) => n + statSync(path.join(files, f)).size, 0);
    assert.deepEqual(bytes, { done: total, total }, "byte progress reaches the three files' size");
  }
  assert.equal(tensors.total, plan.tensors, "every parameter tensor is counted");
  assert.equal(tensors.done, tensors.total, "tensor progress reaches the end");
  assert.ok(m.peakBytes <= plan.in_use_bytes + plan.needed_bytes, `peak ${mb(m.peakBytes)} within the page's estimate`);
}

test("ViT-B/32 f32 from this site: CLI parity, load progress, timings, peak memory", async (t) => {
  const native = h.loadNative(F32_JSON);
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&model=/big/vit-b-32-f32/&bundle=none`);
    const r = await h.waitIdle(page, 1);
    const m = await measure(page);
    report(t, "ViT-B/32 f32 (same site)", m);
    checkModel(r, native, m, F32);
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("ViT-B/32 f16 and the recipe's bundle from local files: parity, features with classes", async (t) => {
  const native = h.loadNative(path.join(RECIPE, "native.json"));
  const { context, page, consoleErrors } = await h.newPage(env.browser, t);
  try {
    // Start on tiny-clip (no bundle) with the default inputs, then pick the recipe's files.
    await page.goto(`${env.server.origin}/?backend=cpu&model=tiny-clip&bundle=none`);
    await h.waitIdle(page, 1);
    await page.setInputFiles("#model-files", MODEL_FILES.map((f) => path.join(RECIPE, "vit-b-32", f)));
    await page.waitForFunction(() => /local files/.test(window.__monoscope.model) && window.__monoscope.state === "ready", null, {
      timeout: h.READY_TIMEOUT_MS,
    });
    const m = await measure(page);
    report(t, "ViT-B/32 f16 (local files)", m);
    checkModel(await h.snapshot(page), native, m, null);
    assert.equal(m.progress.bytes, undefined, "local files are not fetched");

    await page.setInputFiles("#bundle-files", BUNDLE_FILES.map((f) => path.join(RECIPE, "bundle", f)));
    await page.waitForFunction(() => window.__monoscope.bundle && window.__monoscope.state === "ready", null, { timeout: h.READY_TIMEOUT_MS });
    const r = await h.snapshot(page);
    assert.equal(r.bundle.model_matches, true, "the bundle records this model's hash");
    const shown = await h.shownFeatures(page);
    assert.ok(shown.length > 0, "features are listed for the inputs");
    for (const f of shown) assert.match(f.cls, /^(ImgD|TextD|CrossD)$/);
    const consoleProblems = consoleErrors.filter((e) => !/favicon/.test(e));
    assert.deepEqual(consoleProblems, []);
  } finally {
    await context.close();
  }
});

test("a model too large for the wasm heap is refused before its weights are requested", async (t) => {
  const { context, page, requests } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&model=/big/too-big-model/&bundle=none`);
    const r = await h.waitIdle(page, 0);
    assert.equal(r.state, "error");
    assert.match(r.error, /cannot fit in the page's memory: loading it needs about 1\d\.\d\d GB/);
    assert.ok(requests.some((u) => u.endsWith("/too-big-model/config.json")));
    assert.ok(!requests.some((u) => u.endsWith("/too-big-model/model.safetensors")), "weights never requested");

    // The same files picked locally while a model works: refused next to the picker, the
    // working model stays.
    await page.goto(`${env.server.origin}/?backend=cpu&model=tiny-clip&bundle=none`);
    await h.waitIdle(page, 0);
    await page.setInputFiles("#model-files", MODEL_FILES.map((f) => path.join(HUGE, f)));
    await page.waitForSelector("#model-error:not([hidden])");
    assert.match(await page.textContent("#model-error"), /cannot fit in the page's memory.*still using tiny-clip/);
    const after = await h.snapshot(page);
    assert.equal(after.state, "ready");
    assert.match(after.model, /^tiny-clip/);
  } finally {
    await context.close();
  }
});
