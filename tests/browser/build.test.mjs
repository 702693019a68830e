// "Build a bundle" in the page (issue 11): 300 demo-world scenes (tests/out/build-scenes,
// written by scripts/test.sh with `monoscope world-images --count 300 --seed 7` plus a .txt
// caption per image) are picked as files; the page embeds them with the demo model on the CPU
// backend, trains a TopK dictionary and analyses it, then shows features with class badges
// from the new bundle. A reload in the middle of extraction resumes from the rows kept in
// IndexedDB; the MDS classes agree with `monoscope extract / train / analyze` run with the
// page's settings on the same folder for >= 90% of features (the figure is printed); the
// downloaded .zip opens in `monoscope report` and in the page; Stop leaves the page working.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as h from "./helpers.mjs";

const SCENES = path.join(h.OUT, "build-scenes");
const TIMEOUT = 10 * 60 * 1000;
const env = h.suite({ "/out/": h.OUT });

function sceneFiles() {
  assert.ok(existsSync(path.join(SCENES, "index.json")), `${SCENES} not found: scripts/test.sh writes it`);
  return readdirSync(SCENES)
    .filter((n) => /\.(png|txt)$/.test(n))
    .map((n) => path.join(SCENES, n));
}

// The CLI through cargo, with scripts/test.sh's target directory (already built there).
function cli(...args) {
  const env = { ...process.env, CARGO_TARGET_DIR: process.env.CARGO_TARGET_DIR || path.join(os.homedir(), ".cache/monoscope/target") };
  return execFileSync("cargo", ["run", "--quiet", "--", ...args], { cwd: h.ROOT, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

// The entries of a zip with stored (uncompressed) members: {name: Buffer}.
function unzipStored(buf) {
  const out = {};
  let at = 0;
  while (buf.readUInt32LE(at) === 0x04034b50) {
    assert.equal(buf.readUInt16LE(at + 8), 0, "stored entries");
    const size = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const extra = buf.readUInt16LE(at + 28);
    const name = buf.subarray(at + 30, at + 30 + nameLen).toString("utf8");
    const start = at + 30 + nameLen + extra;
    out[name] = buf.subarray(start, start + size);
    at = start + size;
  }
  return out;
}

const buildState = (page) => page.evaluate(() => window.__monoscope.apps.build ?? null);

// Waits until the build ends ("done" or "error") and returns its state. Fails early when the
// state has not changed for `stall` ms (each extraction batch and training chunk changes it;
// good runs take under a minute here), and either way says where it stopped: the last state,
// how long it had not changed, the progress line and the console's errors. The WebGPU build
// once hung to the 10-minute timeout in CI with nothing to tell which phase.
async function waitBuildEnd(page, consoleErrors, { timeout = TIMEOUT, stall = 4 * 60 * 1000 } = {}) {
  const start = Date.now();
  let last = null;
  let changed = start;
  for (;;) {
    const b = await buildState(page);
    const s = JSON.stringify(b);
    if (s !== last) [last, changed] = [s, Date.now()];
    if (["done", "error"].includes(b?.phase)) return b;
    const now = Date.now();
    if (now - start > timeout || now - changed > stall) {
      const status = await page.evaluate(() => document.getElementById("build-status")?.textContent ?? "");
      const progress = await page.evaluate(() =>
        [...document.querySelectorAll(".app-progress:not([hidden]) .app-progress-text")].map((e) => e.textContent),
      );
      throw new Error(
        `the build did not end after ${((now - start) / 1000).toFixed(0)} s; its state, unchanged for ` +
          `${((now - changed) / 1000).toFixed(0)} s: ${last}; status: "${status}"; progress: ${JSON.stringify(progress)}; ` +
          `console errors: ${JSON.stringify(consoleErrors)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function pickAndStart(page, files) {
  await page.setInputFiles("#build-files", files);
  await page.waitForFunction(() => !document.getElementById("build-start").disabled, null, { timeout: 60_000 });
  await page.click("#build-start");
}

test("a bundle built in the page: resume after reload, features with classes, CLI agreement, zip", async (t) => {
  const files = sceneFiles();
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&build=1`);
    await h.waitIdle(page, 1);
    assert.equal(await page.isVisible("#build-panel"), true, "build=1 shows the panel");
    await pickAndStart(page, files);
    assert.match(await page.textContent("#build-status"), /300 pairs/);
    await page.waitForFunction(() => (window.__monoscope.apps.build?.embedded ?? 0) >= 96, null, { timeout: TIMEOUT });
    await page.reload();
    await h.waitIdle(page, 1);
    await pickAndStart(page, files);
    const b = await waitBuildEnd(page, consoleErrors);
    assert.equal(b.phase, "done", `build failed: ${b.error}`);
    assert.ok(b.restored >= 96, `rows kept before the reload were restored (${b.restored})`);
    assert.equal(b.restored + b.embedded, 300, "no finished row was embedded again");
    assert.equal(b.pairs, 300);
    const line =
      `on-device build, 300 demo pairs, CPU backend: extraction ${(b.embedded / b.seconds.extract).toFixed(1)} pairs/s, ` +
      `training ${(b.status.step / b.seconds.train).toFixed(0)} steps/s (${b.status.step} steps), analysis ${b.seconds.analyse.toFixed(1)} s; ` +
      `FVU ${b.status.fvu.map((x) => x.toFixed(3)).join("/")}; settings ${JSON.stringify(b.settings)}`;
    t.diagnostic(line);

    // The new bundle is the page's: features with class badges for the inputs.
    await page.waitForFunction(() => /built here/.test(document.getElementById("bundle").textContent) && window.__monoscope.state === "ready", null, {
      timeout: TIMEOUT,
    });
    const shown = await h.shownFeatures(page);
    assert.ok(shown.length > 0);
    for (const f of shown) assert.match(f.cls, /^(ImgD|TextD|CrossD)$/);
    // A feature's page shows thumbnails of the user's own example images, from the page.
    assert.ok(b.thumbs > 0, "thumbnails were made");
    await page.click(`#features-view button.feature-link[data-feature="${shown[0].id}"] >> nth=0`);
    await page.waitForFunction(() => {
      const imgs = document.querySelectorAll("#feature-view img.example-thumb");
      return imgs.length > 0 && Array.from(imgs).every((i) => i.complete && i.naturalWidth > 0);
    }, null, { timeout: 60_000 });
    // Kept in this browser and listed for reuse.
    assert.match(await page.textContent("#saved-bundles"), /built here/);

    // The same method natively: extract / train / analyze with the page's settings.
    const work = path.join(h.OUT, "build-cli");
    mkdirSync(work, { recursive: true });
    const s = b.settings;
    const [emb, dict, bundle] = ["emb.safetensors", "dict", "bundle"].map((f) => path.join(work, f));
    cli("extract", "--model", "assets/demo/clip", "--data", SCENES, "--out", emb);
    cli("train", "--embeddings", emb, "--kind", "topk", "--center", "--features", `${s.features}`, "--k", `${s.k}`, "--steps", `${s.steps}`, "--batch", `${s.batch}`, "--seed", `${s.seed}`, "--out", dict);
    cli("analyze", "--model", "assets/demo/clip", "--dict", dict, "--embeddings", emb, "--center", "--out", bundle);
    const native = JSON.parse(readFileSync(path.join(bundle, "features.json"), "utf8")).features.map((f) => f.class);
    assert.equal(native.length, b.classes.length);
    const same = native.filter((c, i) => c === b.classes[i]).length;
    const agree = `page vs CLI feature classes: ${same}/${native.length} agree (${((100 * same) / native.length).toFixed(1)}%)`;
    t.diagnostic(agree);
    assert.ok(same / native.length >= 0.9, agree);

    // The zip: three files, readable by `monoscope report` and by the page's bundle picker.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#build-download")]);
    const zipPath = path.join(h.OUT, "built-bundle.zip");
    await download.saveAs(zipPath);
    const entries = unzipStored(readFileSync(zipPath));
    assert.deepEqual(Object.keys(entries).sort(), ["bundle/dictionary.safetensors", "bundle/features.json", "bundle/manifest.json"]);
    const unpacked = path.join(h.OUT, "built-bundle");
    mkdirSync(path.join(unpacked, "bundle"), { recursive: true });
    for (const [name, bytes] of Object.entries(entries)) writeFileSync(path.join(unpacked, name), bytes);
    assert.match(cli("report", path.join(unpacked, "bundle")), /CrossD/);
    await page.click("#bundle-none");
    await page.waitForFunction(() => window.__monoscope.bundle === null);
    await page.click("#saved-use");
    await page.waitForFunction(() => /built here/.test(document.getElementById("bundle").textContent), null, { timeout: 60_000 });
    await page.click("#bundle-none");
    await page.waitForFunction(() => window.__monoscope.bundle === null);
    await page.setInputFiles(
      "#bundle-files",
      ["manifest.json", "features.json", "dictionary.safetensors"].map((f) => path.join(unpacked, "bundle", f)),
    );
    await page.waitForFunction(() => window.__monoscope.bundle && window.__monoscope.state === "ready", null, { timeout: TIMEOUT });
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("Stop during training keeps the page working", async (t) => {
  const { context, page } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&build=1`);
    await h.waitIdle(page, 1);
    await pickAndStart(page, sceneFiles());
    await page.waitForFunction(() => window.__monoscope.apps.build?.phase === "train", null, { timeout: TIMEOUT });
    await page.click("#build-stop");
    await page.waitForFunction(() => window.__monoscope.apps.build?.phase === "stopped", null, { timeout: TIMEOUT });
    assert.match(await page.textContent("#build-status"), /stopped/);
    const runs = (await h.snapshot(page)).runs;
    await page.fill("#new-prompt", "a small blue square");
    await page.press("#new-prompt", "Enter");
    const r = await h.waitIdle(page, runs + 1);
    assert.equal(r.state, "ready");
    assert.equal(r.bundle.features, 256, "the demo bundle is still loaded");
  } finally {
    await context.close();
  }
});

test("an existing dictionary (the CLI's) skips training; its classes match the CLI's bundle", async (t) => {
  const dictDir = path.join(h.OUT, "build-cli", "dict");
  assert.ok(existsSync(path.join(dictDir, "dict.json")), "the first test writes the CLI's dictionary");
  const { context, page, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&build=1`);
    await h.waitIdle(page, 1);
    await page.click("#build-panel details summary");
    await page.setInputFiles("#build-dict", ["dict.json", "dictionary.safetensors"].map((f) => path.join(dictDir, f)));
    assert.equal(await page.isChecked("#build-center"), true, "a monoscope dictionary is analysed centred");
    await pickAndStart(page, sceneFiles());
    const b = await waitBuildEnd(page, consoleErrors);
    assert.equal(b.phase, "done", `build failed: ${b.error}`);
    assert.equal(b.status, null, "no training ran");
    const native = JSON.parse(readFileSync(path.join(h.OUT, "build-cli", "bundle", "features.json"), "utf8")).features.map((f) => f.class);
    const same = native.filter((c, i) => c === b.classes[i]).length;
    t.diagnostic(`brought dictionary: ${same}/${native.length} classes as the CLI's analyze`);
    assert.ok(same / native.length >= 0.9);
  } finally {
    await context.close();
  }
});

test("caption lists in the page (TSV, CSV, COCO by the CLI's reader), and dropped files", async (t) => {
  const index = JSON.parse(readFileSync(path.join(SCENES, "index.json"), "utf8")).slice(0, 60);
  const dir = path.join(h.OUT, "build-lists");
  mkdirSync(dir, { recursive: true });
  const tsv = index.map((e) => `${e.file}\t${e.caption}`).join("\n") + "\nmissing.png\ta caption without its image\n";
  const csv = "image,caption\n" + index.map((e) => `${e.file},"${e.caption}"`).join("\n") + "\n";
  const coco = {
    images: index.map((e, i) => ({ id: i, file_name: e.file })),
    annotations: index.flatMap((e, i) => [
      { image_id: i, caption: e.caption },
      { image_id: i, caption: `another caption of ${e.file}` },
    ]),
  };
  writeFileSync(path.join(dir, "pairs.tsv"), tsv);
  writeFileSync(path.join(dir, "pairs.csv"), csv);
  writeFileSync(path.join(dir, "captions_train.json"), JSON.stringify(coco));
  const images = index.map((e) => path.join(SCENES, e.file));
  const { context, page } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&build=1`);
    await h.waitIdle(page, 1);
    for (const [list, pairs, skipped] of [
      ["pairs.tsv", 60, 1],
      ["pairs.csv", 60, 0],
      ["captions_train.json", 120, 0],
    ]) {
      await page.setInputFiles("#build-files", [path.join(dir, list), ...images]);
      await page.waitForFunction((l) => document.getElementById("build-status").textContent.startsWith(l), list, { timeout: 60_000 });
      const status = await page.textContent("#build-status");
      assert.match(status, new RegExp(`^${list.replace(".", "\\.")}: ${pairs} pairs`), status);
      if (skipped) assert.match(status, /missing\.png is not among the picked files/);
      else assert.doesNotMatch(status, /skipped/);
    }
    // Dropped files (headless Chromium cannot drop a real folder; a folder's files are the
    // same list, with their paths): 20 scenes and their captions.
    await page.evaluate(async (names) => {
      const dt = new DataTransfer();
      for (const n of names) {
        const blob = await (await fetch(`/out/build-scenes/${n}`)).blob();
        dt.items.add(new File([blob], n));
      }
      document.getElementById("build-drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, index.slice(0, 20).flatMap((e) => [e.file, e.file.replace(/\.png$/, ".txt")]));
    await page.waitForFunction(() => /: 20 pairs/.test(document.getElementById("build-status").textContent), null, { timeout: 60_000 });
  } finally {
    await context.close();
  }
});

test("a dictionary from the hub (offline, mocked): found in a folder of the repo, SAELens tried first", async (t) => {
  const dictDir = path.join(h.OUT, "build-cli", "dict");
  const { context, page } = await h.newPage(env.browser, t);
  const routed = [];
  await context.route("https://huggingface.co/**", async (route) => {
    const url = new URL(route.request().url());
    routed.push(url.pathname);
    const m = url.pathname.match(/^\/someone\/clip-sae\/resolve\/main\/layer\/(dict\.json|dictionary\.safetensors)$/);
    if (!m) {
      await route.fulfill({ status: 404, body: "not found", headers: { "access-control-allow-origin": "*" } });
      return;
    }
    const body = readFileSync(path.join(dictDir, m[1]));
    await route.fulfill({ status: 200, body, headers: { "content-length": String(body.length), "access-control-allow-origin": "*" } });
  });
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&build=1`);
    await h.waitIdle(page, 1);
    assert.deepEqual(routed, [], "nothing goes to the hub until the user asks");
    await page.click("#build-panel details summary");
    await page.fill("#build-dict-repo", "someone/clip-sae/../x");
    await page.click("#build-dict-hub");
    await page.waitForSelector("#build-error:not([hidden])");
    assert.deepEqual(routed, [], "a bad path is refused without a request");
    await page.fill("#build-dict-repo", "someone/clip-sae/layer");
    await page.click("#build-dict-hub");
    await page.waitForFunction(() => /monoscope dictionary from hf:someone\/clip-sae\/layer/.test(document.getElementById("build-dict-status").textContent), null, {
      timeout: 60_000,
    });
    assert.ok(routed.some((p) => p.endsWith("/layer/cfg.json")), "SAELens' cfg.json was tried first");
    assert.equal(await page.isChecked("#build-center"), true);
  } finally {
    await context.close();
  }
});

test("on WebGPU (SwiftShader here): 60 pairs extracted on the GPU path, trained and analysed", async (t) => {
  const index = JSON.parse(readFileSync(path.join(SCENES, "index.json"), "utf8")).slice(0, 60);
  const files = index.flatMap((e) => [path.join(SCENES, e.file), path.join(SCENES, e.file.replace(/\.png$/, ".txt"))]);
  const { context, page, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=webgpu&build=1`);
    const r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.match(r.backend, /^webgpu/);
    await pickAndStart(page, files);
    const b = await waitBuildEnd(page, consoleErrors);
    assert.equal(b.phase, "done", `build failed: ${b.error}`);
    assert.equal(b.pairs, 60);
    t.diagnostic(`webgpu (${r.backend}): extraction ${(b.embedded / b.seconds.extract).toFixed(1)} pairs/s, training ${b.seconds.train.toFixed(1)} s`);
    await page.waitForFunction(() => /built here/.test(document.getElementById("bundle").textContent) && window.__monoscope.state === "ready", null, {
      timeout: TIMEOUT,
    });
    assert.ok((await h.shownFeatures(page)).length > 0);
  } finally {
    await context.close();
  }
});
