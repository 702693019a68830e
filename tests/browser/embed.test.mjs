// The page computes what the native CLI computes, on both backends, and shows features.
//
// Opens the built site (dist/, `trunk build --release`) in Debian's headless Chromium with its
// default state (demo model and bundle, the first demo image, its caption and a second prompt),
// waits for the analysis, checks that features with class badges appear, and compares the
// page's embeddings with the CLI's (MONOSCOPE_NATIVE_JSON, written by `monoscope embed --model
// assets/demo/clip --image assets/demo/images/scene-0.png --text ... --out FILE`). Also checks
// the random-init tiny-clip against MONOSCOPE_NATIVE_TINY_JSON.
// Run: node --test tests/browser/   (scripts/test.sh does all of it)

import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import * as h from "./helpers.mjs";

let server;
let browser;
let webgpu = { available: false, reason: "not probed" };

before(async () => {
  h.checkDist();
  server = await h.startServer();
  browser = await h.startBrowser();
  // Probe WebGPU from a page of the test origin (a secure context: 127.0.0.1).
  const page = await browser.newPage();
  await page.goto(`${server.origin}/assets/demo/images/index.json`);
  webgpu = await page.evaluate(async () => {
    if (!("gpu" in navigator)) return { available: false, reason: "navigator.gpu is missing" };
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { available: false, reason: "navigator.gpu.requestAdapter() returned null" };
    const info = adapter.info || {};
    return {
      available: true,
      fallback: Boolean(adapter.isFallbackAdapter ?? info.isFallbackAdapter),
      vendor: info.vendor,
      architecture: info.architecture,
      description: info.description,
    };
  });
  await page.close();
  console.log(`# chromium ${browser.version()}; WebGPU adapter: ${JSON.stringify(webgpu)}`);
  writeFileSync(path.join(h.OUT, "webgpu-adapter.json"), JSON.stringify(webgpu, null, 2) + "\n");
});

after(async () => {
  await browser?.close();
  await server?.close();
});

// Compares every page input with the native entry of the same image file / prompt text.
function compareWithNative(t, r, native) {
  let compared = 0;
  native.images.forEach((file, i) => {
    const name = path.basename(file);
    const mine = r.images.find((x) => x.name === name);
    if (!mine) return;
    const c = h.cosine(mine.embedding, native.image_embeds[i]);
    t.diagnostic(`image ${name}: cos(page, native) = ${c.toFixed(6)}`);
    assert.ok(c >= h.MIN_COSINE, `image ${name} differs from native: cosine ${c}`);
    compared += 1;
  });
  native.texts.forEach((text, i) => {
    const mine = r.prompts.find((x) => x.text === text);
    if (!mine) return;
    const c = h.cosine(mine.embedding, native.text_embeds[i]);
    t.diagnostic(`prompt "${text}": cos(page, native) = ${c.toFixed(6)}`);
    assert.ok(c >= h.MIN_COSINE, `prompt "${text}" differs from native: cosine ${c}`);
    compared += 1;
  });
  return compared;
}

for (const backend of ["cpu", "webgpu"]) {
  describe(`backend=${backend}`, () => {
    test("demo model: features with class badges, embeddings match the native CLI", async (t) => {
      if (backend === "webgpu" && !webgpu.available) {
        const msg = `NO WebGPU ADAPTER in this headless Chromium (${webgpu.reason}): the webgpu backend is NOT tested; cpu is.`;
        console.log(`# ${msg}`);
        t.skip(msg);
        return;
      }
      const native = h.loadNative();
      const { context, page, requests, consoleErrors } = await h.newPage(browser, t);
      try {
        const t0 = Date.now();
        await page.goto(`${server.origin}/?backend=${backend}`);
        const r = await h.waitIdle(page, 1);
        const seconds = ((Date.now() - t0) / 1000).toFixed(1);
        assert.equal(r.state, "ready", `page error: ${r.error}`);
        assert.equal(r.error, null);
        if (backend === "cpu") assert.equal(r.backend, "cpu");
        else assert.match(r.backend, /^webgpu/);
        t.diagnostic(`backend "${r.backend}": idle after ${seconds} s (first result at ${r.firstResultMs?.toFixed(0)} ms)`);

        // The default inputs: the first demo image, its caption and a second prompt.
        assert.deepEqual(r.images.map((x) => x.name), [h.DEMO_IMAGES[0].file]);
        assert.equal(r.prompts.length, 2);
        assert.equal(r.prompts[0].text, h.DEMO_IMAGES[0].caption);
        for (const x of [...r.images, ...r.prompts]) assert.equal(x.status, "ok", `${x.name ?? x.text}: ${x.error}`);

        // The bundle loaded and matches the model.
        await h.assertBundleLoaded(page, r);
        assert.equal(r.bundle.features, 256);
        assert.equal(r.bundle.model_matches, true);
        assert.deepEqual(r.bundle.class_counts, h.DEMO_MANIFEST.class_counts);

        // Features with class badges, one card per input, ordered by activation.
        const shown = await h.shownFeatures(page);
        for (const x of [...r.images, ...r.prompts]) {
          const rows = shown.filter((s) => s.input === x.key);
          assert.ok(rows.length > 0, `features shown for ${x.name ?? x.text}`);
          assert.deepEqual(rows.map((s) => s.id), x.top.slice(0, rows.length).map(([id]) => id), "shown in activation order");
          for (const s of rows) assert.ok(["ImgD", "TextD", "CrossD", "Rare"].includes(s.cls), `badge "${s.cls}"`);
        }
        const classes = new Set(shown.map((s) => s.cls));
        t.diagnostic(`badges shown: ${[...classes].join(", ")}`);
        assert.ok(classes.size >= 2, "several feature classes appear");
        // The backend in use is shown; on the CPU backend with the wasm build the worker
        // picked: relaxed SIMD, which Chromium has had since 114 (www/worker.js).
        if (backend === "cpu") {
          assert.equal(r.wasm, "relaxed SIMD");
          assert.equal((await page.textContent("#backend")).trim(), "cpu (relaxed SIMD)");
        } else {
          assert.equal((await page.textContent("#backend")).trim(), r.backend);
        }

        const compared = compareWithNative(t, r, native);
        assert.ok(compared >= 3, `compared the image and both prompts with the CLI (${compared})`);
        await h.screenshot(page, `inputs-features-${backend}`);
        h.assertSameOrigin(requests, server.origin);
        await h.assertNoCspViolations(page, consoleErrors);
      } finally {
        await context.close();
      }
    });
  });
}

// Both wasm builds (www/index.html): the one the worker picks here (relaxed SIMD) and the
// SIMD128 one that browsers without relaxed SIMD load, forced with ?wasm=simd128.
for (const [wasm, build] of [["auto", "relaxed SIMD"], ["simd128", "SIMD128"]]) {
  test(`tiny-clip (random init, no bundle) matches the native CLI, wasm=${wasm}`, async (t) => {
    const native = h.loadNative(h.NATIVE_TINY_JSON);
    const { context, page, requests, consoleErrors } = await h.newPage(browser, t);
    try {
      const prompt = encodeURIComponent(native.texts[0]);
      await page.goto(`${server.origin}/?backend=cpu&model=tiny-clip&image=demo/astronaut.jpg&prompt=${prompt}&wasm=${wasm}`);
      const r = await h.waitIdle(page, 1);
      assert.equal(r.state, "ready", `page error: ${r.error}`);
      assert.equal(r.wasm, build, "the wasm build the worker loaded");
      assert.equal((await page.textContent("#backend")).trim(), `cpu (${build})`);
      assert.equal(r.bundle, null, "tiny-clip has no bundle");
      assert.equal(h.cosine(r.images[0].embedding, native.image_embeds[0]) >= h.MIN_COSINE, true);
      assert.equal(compareWithNative(t, r, native), 2);
      assert.match(await page.textContent("#features-view"), /No bundle loaded/);
      // Several images in one forward pass (embed_images, the batch path of bench_web.mjs):
      // each row as the page's one-image path gives it.
      const rows = await page.evaluate(async () => {
        const get = async (u) => (await fetch(u)).arrayBuffer();
        const [a, b] = await Promise.all([get("demo/astronaut.jpg"), get("assets/demo/images/scene-1.png")]);
        return (await window.__monoscopeDebug.embedImages([a, b, a])).map((x) => Array.from(x));
      });
      assert.equal(rows.length, 3);
      assert.ok(h.cosine(rows[0], r.images[0].embedding) >= 0.99999, "batched row 0 = the page's embedding");
      assert.ok(h.cosine(rows[2], rows[0]) >= 0.99999, "the same image in one batch, same row");
      assert.ok(h.cosine(rows[1], rows[0]) < 0.999, "another image, another row");
      h.assertSameOrigin(requests, server.origin);
      await h.assertNoCspViolations(page, consoleErrors);
    } finally {
      await context.close();
    }
  });
}

test("an unknown ?wasm= value is reported and the page goes on with auto", async (t) => {
  const { context, page, consoleErrors } = await h.newPage(browser, t);
  try {
    await page.goto(`${server.origin}/?backend=cpu&model=tiny-clip&wasm=simd256`);
    const r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.match(await page.textContent("#notes"), /wasm must be one of auto, relaxed, simd128, not "simd256"; using auto/);
    assert.equal(r.wasm, "relaxed SIMD");
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});
