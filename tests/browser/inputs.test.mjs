// Bad inputs give an error next to that input and nothing else is lost; the engine worker
// survives crashes; user text stays text. All on the CPU backend with the demo model.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import * as h from "./helpers.mjs";

const env = h.suite();

const TRUNCATED_JPEG = path.join(h.ROOT, "tests/fixtures/images/truncated.jpg");
const NOT_AN_IMAGE = path.join(h.ROOT, "tests/fixtures/images/not_an_image.png");
const DEMO = (i) => path.join(h.ROOT, "assets/demo/images", h.DEMO_IMAGES[i].file);

// playwright takes either paths or buffers in one setInputFiles call: files as buffers.
function file(p, mimeType = "application/octet-stream") {
  return { name: path.basename(p), mimeType, buffer: readFileSync(p) };
}

// The image card with this file name: its status and error text as shown.
function card(page, name) {
  return page.evaluate((n) => {
    const cards = Array.from(document.querySelectorAll("#image-list .image-card"));
    const c = cards.find((x) => x.querySelector(".input-name")?.textContent === n);
    if (!c) return null;
    const err = c.querySelector(".error");
    return { status: c.dataset.status, error: err && !err.hidden ? err.textContent : null };
  }, name);
}

test("a corrupt image and a non-image file show errors on their cards; the rest keeps working", async (t) => {
  const native = h.loadNative();
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu`);
    let r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    const before = r;

    // Two bad files at once (one truncated JPEG, one text file named .png) and a plain text file.
    await page.setInputFiles("#image-input", [
      file(TRUNCATED_JPEG, "image/jpeg"),
      file(NOT_AN_IMAGE, "image/png"),
      { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("this is not an image\n") },
    ]);
    r = await h.waitIdle(page, 2);
    assert.equal(r.state, "ready", "bad inputs are errors of those inputs, not of the page");
    for (const name of ["truncated.jpg", "not_an_image.png", "notes.txt"]) {
      const img = r.images.find((x) => x.name === name);
      assert.ok(img, `${name} has a card`);
      assert.equal(img.status, "error", `${name} failed`);
      assert.ok(img.error && img.error.length > 5, `${name} has an error message`);
      const shown = await card(page, name);
      assert.equal(shown.status, "error");
      assert.equal(shown.error, img.error, `${name}: the error is shown on its card`);
      t.diagnostic(`${name}: ${shown.error}`);
    }
    // The demo image and prompts kept their results and the page shows no global error.
    const demo = r.images.find((x) => x.name === h.DEMO_IMAGES[0].file);
    assert.equal(demo.status, "ok");
    assert.deepEqual(demo.embedding, before.images[0].embedding);
    assert.deepEqual(r.prompts.map((p) => p.status), ["ok", "ok"]);
    assert.ok(await page.isHidden("#error"), "no page-level error");
    await h.screenshot(page, "input-errors");

    // The next valid image still works and matches the CLI.
    await page.setInputFiles("#image-input", DEMO(0));
    r = await h.waitIdle(page, 3);
    const again = r.images.filter((x) => x.name === h.DEMO_IMAGES[0].file);
    assert.equal(again.length, 2);
    assert.equal(again[1].status, "ok", again[1].error);
    assert.ok(h.cosine(again[1].embedding, native.image_embeds[0]) >= h.MIN_COSINE);
    assert.ok((await h.shownFeatures(page)).some((s) => s.input === again[1].key), "its features are shown");

    // Removing a failed card removes only that card.
    await page.click(`button[aria-label="remove image notes.txt"]`);
    assert.equal(await card(page, "notes.txt"), null);
    assert.equal((await h.snapshot(page)).images.length, 4);
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("pending inputs go to the engine in batches: each result is its analysis alone, and a bad file fails alone", async (t) => {
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&prompt=a%20big%20red%20circle&prompt=two%20small%20blue%20squares&prompt=a%20green%20triangle`);
    let r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    const good = [1, 2, 3, 4, 5].map((i) => DEMO(i));
    await page.setInputFiles("#image-input", [file(good[0]), file(TRUNCATED_JPEG, "image/jpeg"), ...good.slice(1).map((p) => file(p))]);
    r = await h.waitIdle(page, 2);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    const sizes = await page.evaluate(() => window.__monoscope.batchSizes);
    t.diagnostic(`inputs per engine call: ${sizes.join(", ")}`);
    assert.ok(sizes.some((n) => n > 1), "pending inputs shared a forward pass");
    assert.ok(Math.max(...sizes) <= 8, "at most 8 inputs per call");
    const bad = r.images.find((x) => x.name === "truncated.jpg");
    assert.equal(bad.status, "error");
    assert.ok(bad.error.length > 5, "the bad file has its own message");

    // Each batched result against the same input analysed alone: the same embedding up to
    // float rounding (GEMM blocking follows the batch size) and the same activations.
    const alone = (kind, input) =>
      page.evaluate(
        async ({ kind, input }) => {
          const dbg = window.__monoscopeDebug;
          const res = kind === "image" ? await dbg.analyzeImage(new Uint8Array(input).buffer) : await dbg.analyzeText(input);
          return { embedding: Array.from(res.embedding), activations: Array.from(res.activations) };
        },
        { kind, input },
      );
    const check = (x, one) => {
      assert.equal(x.status, "ok", `${x.name ?? x.text}: ${x.error}`);
      assert.ok(h.cosine(x.embedding, one.embedding) >= 0.99999, `${x.name ?? x.text}: same embedding`);
      assert.ok(x.top.length > 0, `${x.name ?? x.text}: has features`);
      for (const [k, v] of x.top) assert.ok(Math.abs(one.activations[k] - v) <= 1e-4 * Math.max(1, Math.abs(v)), `${x.name ?? x.text}: feature ${k}`);
    };
    for (const p of good) check(r.images.find((x) => x.name === path.basename(p)), await alone("image", [...readFileSync(p)]));
    assert.equal(r.prompts.length, 3);
    for (const x of r.prompts) check(x, await alone("text", x.text));
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("?engines=2 shares each batch with a helper worker that follows the model and bundle", async (t) => {
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&engines=2&prompt=a%20big%20red%20circle`);
    let r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.match(page.url(), /engines=2/, "the link keeps the setting");
    await page.waitForFunction(() => window.__monoscope.engines?.parallelism === 2, null, { timeout: 60_000 });
    assert.equal(page.workers().length, 2, "two engine workers");

    const good = [0, 1, 2, 3, 4, 5].map((i) => DEMO(i));
    await page.setInputFiles("#image-input", good.map((p) => file(p)));
    r = await h.waitIdle(page, 2);
    const engines = await page.evaluate(() => window.__monoscope.engines);
    t.diagnostic(`batches ${(await page.evaluate(() => window.__monoscope.batchSizes)).join(", ")}; helper calls ${engines.helperCalls}`);
    assert.ok(engines.helperCalls[0] > 0, "the helper took a share");
    // Each result equals the same image analysed alone by the main engine.
    for (const p of good) {
      const x = r.images.find((y) => y.name === path.basename(p));
      assert.equal(x.status, "ok", `${x.name}: ${x.error}`);
      const one = await page.evaluate(async (bytes) => {
        const res = await window.__monoscopeDebug.analyzeImage(new Uint8Array(bytes).buffer);
        return { embedding: Array.from(res.embedding), activations: Array.from(res.activations) };
      }, [...readFileSync(p)]);
      assert.ok(h.cosine(x.embedding, one.embedding) >= 0.99999, `${x.name}: same embedding`);
      assert.ok(x.top.length > 0);
      for (const [k, v] of x.top) assert.ok(Math.abs(one.activations[k] - v) <= 1e-4 * Math.max(1, Math.abs(v)), `${x.name}: feature ${k}`);
    }

    // Each image alone (above) ran on both workers, its pass cut between them (engine.js
    // splitImage: by output columns), and gave the batch's result; cut by columns, by token
    // rows or whole on the main engine, the bits are the same.
    const split = await page.evaluate(() => window.__monoscope.engines.splitPasses);
    assert.equal(split - engines.splitPasses, good.length, "every single image ran split");
    const { cols, rows, whole, timing, ms } = await page.evaluate(async (bytes) => {
      const d = window.__monoscopeDebug;
      const buf = () => new Uint8Array(bytes).buffer;
      const plain = (x) => ({ embedding: Array.from(x.embedding), activations: Array.from(x.activations) });
      const t0 = performance.now();
      const cols = await d.analyzeImage(buf());
      const ms = performance.now() - t0;
      const timing = window.__monoscope.engines.splitTiming;
      const rows = await d.analyzeImage(buf(), { cut: "rows" });
      const whole = await d.analyzeImage(buf(), { whole: true });
      return { cols: plain(cols), rows: plain(rows), whole: plain(whole), timing, ms };
    }, [...readFileSync(good[3])]);
    assert.deepEqual(cols, whole, "a pass cut by columns gives the whole pass's bits");
    assert.deepEqual(rows, whole, "a pass cut by token rows gives the whole pass's bits");
    assert.equal(await page.evaluate(() => window.__monoscope.engines.splitPasses), split + 2, "the first two ran split");
    // Each part timed its phases (bench_web.mjs prints them): a part's phases fit inside
    // that pass as the page saw it (milliseconds, this pass's; the demo model's layers take
    // microseconds, under the timers' resolution, so only the sum is checked for time).
    assert.equal(timing?.length, 2, "a timing for each part of the split pass");
    for (const t of timing) {
      const phases = ["open", "share", "wait", "gather", "report"].map((k) => t[k]);
      assert.ok(phases.every((v) => Number.isFinite(v) && v >= 0), JSON.stringify(t));
      const sum = phases.reduce((x, y) => x + y);
      assert.ok(sum > 0 && sum <= ms, `within the page's ${ms} ms: ${JSON.stringify(t)}`);
    }
    // One file added alone goes through the page's queue as a batch of one, split; a bad
    // file alone fails the split and runs whole, to its own error.
    const again = { ...file(DEMO(4)), name: "again.png" };
    await page.setInputFiles("#image-input", [again]);
    r = await h.waitIdle(page, 3);
    const x4 = r.images.find((x) => x.name === path.basename(DEMO(4)));
    assert.ok(h.cosine(r.images.find((x) => x.name === "again.png").embedding, x4.embedding) >= 0.99999, "the same file alone, split");
    assert.equal(await page.evaluate(() => window.__monoscope.engines.splitPasses), split + 3, "the file alone ran split");
    await page.setInputFiles("#image-input", [file(TRUNCATED_JPEG)]);
    r = await h.waitIdle(page, 4);
    assert.equal((await card(page, "truncated.jpg")).status, "error");
    assert.equal(await page.evaluate(() => window.__monoscope.engines.splitPasses), split + 3, "a bad file does not run split");
    assert.equal(page.workers().length, 2, "no worker was lost");

    // Without a bundle, the helper (once it has dropped it too) gives no activations either.
    const calls = engines.helperCalls[0];
    await page.click("#bundle-none");
    await page.waitForFunction(() => window.__monoscope.bundle === null && window.__monoscope.engines.parallelism === 2, null, { timeout: 60_000 });
    await page.click("#rerun");
    r = await h.waitIdle(page, 5);
    assert.ok(r.images.every((x) => x.status === (x.name === "truncated.jpg" ? "error" : "ok") && x.top.length === 0), "no activations without a bundle");
    // The re-run went out before the helper had dropped the bundle or after; either way it
    // is not used until it has, so no stale activation can appear.
    t.diagnostic(`helper calls after the bundle change: ${(await page.evaluate(() => window.__monoscope.engines.helperCalls))[0] - calls}`);

    // A helper that dies in the middle of a split pass, without a word to the other part
    // (the workers swap their shares over their own channel): the page stops this
    // engine's part, which would wait for the helper's for ever, and runs the image whole.
    const before = await page.evaluate(() => window.__monoscope.engines.splitPasses);
    const alone = await page.evaluate(async (bytes) => {
      const d = window.__monoscopeDebug;
      await d.crashHelperInSplit(1);
      const hung = new Promise((_, no) => setTimeout(() => no(new Error("the image never came back (a part left waiting)")), 30_000));
      return Array.from((await Promise.race([d.analyzeImage(new Uint8Array(bytes).buffer), hung])).embedding);
    }, [...readFileSync(DEMO(4))]);
    assert.ok(h.cosine(alone, x4.embedding) >= 0.99999, "the image, run whole once the helper died");
    assert.equal(await page.evaluate(() => window.__monoscope.engines.splitPasses), before, "the split pass did not finish");
    await page.waitForFunction(() => window.__monoscope.engines.parallelism === 1, null, { timeout: 10_000 });
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("?engines=2: a helper that dies before a split pass's first layer, while this engine's part waits in its queue, leaves nothing waiting", async (t) => {
  const { context, page } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&engines=2`);
    const r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    await page.waitForFunction(() => window.__monoscope.engines?.parallelism === 2, null, { timeout: 60_000 });
    // This engine's part of the pass waits in its worker's queue (behind a command that
    // waits, as reading a Blob does) while the helper dies: the page's stop reaches the
    // worker before the part begins, and the part fails at once instead of waiting for the
    // dead helper for ever. (A part already running is stopped too: the test above.)
    const before = await page.evaluate(() => window.__monoscope.engines.splitPasses);
    const res = await page.evaluate(async (bytes) => {
      const d = window.__monoscopeDebug;
      const buf = () => new Uint8Array(bytes).buffer;
      const hung = () => new Promise((_, no) => setTimeout(() => no(new Error("the image never came back (a part left waiting)")), 30_000));
      await d.crashHelperInSplit(0);
      const held = d.holdEngine(500);
      const one = await Promise.race([d.analyzeImage(buf()), hung()]);
      await held;
      const whole = await d.analyzeImage(buf(), { whole: true });
      return { one: Array.from(one.embedding), whole: Array.from(whole.embedding), split: window.__monoscope.engines.splitPasses };
    }, [...readFileSync(DEMO(2))]);
    assert.deepEqual(res.one, res.whole, "the image, run whole once the helper died");
    assert.equal(res.split, before, "the split pass did not finish");
    await page.waitForFunction(() => window.__monoscope.engines.parallelism === 1, null, { timeout: 10_000 });
  } finally {
    await context.close();
  }
});

test("an empty prompt and an off-site image URL are errors of those inputs", async (t) => {
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu&prompt=a%20big%20red%20circle&image=https://example.com/cat.png&image=assets/demo/images/${h.DEMO_IMAGES[1].file}`);
    const r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    const off = r.images.find((x) => x.name === "cat.png");
    assert.equal(off.status, "error");
    assert.match(off.error, /must be on this site/);
    assert.equal(r.images.find((x) => x.name === h.DEMO_IMAGES[1].file).status, "ok");
    // The rejected URL was never requested, and it is not written back into the link.
    assert.ok(!requests.some((u) => new URL(u).hostname === "example.com"));
    assert.ok(!page.url().includes("example.com"), page.url());

    // The add form refuses an empty prompt, next to the form.
    await page.fill("#new-prompt", "   ");
    await page.click("#add-prompt");
    assert.ok(await page.isVisible("#prompt-form-error"));
    assert.equal((await h.snapshot(page)).prompts.length, 1);
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("a malformed bundle shows an error next to the bundle input; the loaded one stays", async (t) => {
  const { context, page, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu`);
    let r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    await h.assertBundleLoaded(page, r);
    const bundleDir = path.join(h.ROOT, "assets/demo/bundle");
    await page.setInputFiles("#bundle-files", [
      file(path.join(bundleDir, "manifest.json")),
      { name: "features.json", mimeType: "application/json", buffer: Buffer.from('{"features": [') },
      file(path.join(bundleDir, "dictionary.safetensors")),
    ]);
    await page.waitForSelector("#bundle-error:not([hidden])");
    const msg = await page.textContent("#bundle-error");
    t.diagnostic(`bundle error: ${msg}`);
    assert.ok(msg.length > 5);
    r = await h.waitIdle(page, 1);
    assert.equal(r.bundle.features, 256, "the demo bundle is still loaded");
    assert.ok((await h.shownFeatures(page)).length > 0);

    // Missing files are named.
    await page.setInputFiles("#bundle-files", [path.join(bundleDir, "manifest.json")]);
    await page.waitForFunction(() => /missing features\.json/.test(document.getElementById("bundle-error").textContent));

    // A valid local bundle loads and the inputs are analysed again.
    await page.setInputFiles("#bundle-files", ["manifest.json", "features.json", "dictionary.safetensors"].map((f) => path.join(bundleDir, f)));
    await page.waitForFunction(() => /local files/.test(document.getElementById("bundle").textContent) || !document.getElementById("bundle-error").hidden);
    assert.ok(await page.isHidden("#bundle-error"), `valid bundle refused: ${await page.textContent("#bundle-error")}`);
    r = await h.waitIdle(page, 2);
    assert.match(await page.textContent("#bundle"), /local files/);
    assert.equal(r.bundle.features, 256);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("a crashed engine worker is restarted and the page keeps working", async (t) => {
  const { context, page, requests } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu`);
    let r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    const before = r.images[0].embedding;
    await page.evaluate(() => window.__monoscopeDebug.crashWorker());
    await page.waitForFunction(() => window.__monoscope.restarts >= 1, null, { timeout: 30000 });
    assert.match(await page.textContent("#notes"), /engine crashed: simulated worker crash.*restarted/, "the crash is shown");
    // The page still answers: recompute everything with the restarted worker.
    await page.click("#rerun");
    r = await h.waitIdle(page, 2);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.ok(h.cosine(r.images[0].embedding, before) > 0.99999, "same result after the restart");
    assert.ok(r.bundle, "the bundle came back with the restarted worker");
    assert.ok(r.images[0].top.length > 0, "activations after the restart");
    h.assertSameOrigin(requests, env.server.origin);
  } finally {
    await context.close();
  }
});

test("user text is rendered as text; an unknown backend is an error, not a dead page", async () => {
  const { context, page } = await h.newPage(env.browser, null);
  try {
    const evil = "<img src=x onerror=alert(1)>";
    await page.goto(`${env.server.origin}/?backend=cpu&prompt=${encodeURIComponent(evil)}`);
    const r = await h.waitIdle(page, 1);
    assert.equal(r.prompts[0].text, evil);
    assert.equal(await page.$$eval("main img[src='x'], header img[src='x']", (n) => n.length), 0, "no markup from the prompt");
    assert.ok((await page.textContent("#features-view")).includes(evil), "the prompt is shown as text");
    assert.equal(await page.inputValue("#prompt-list input"), evil);

    await page.goto(`${env.server.origin}/?backend=${encodeURIComponent(evil)}`);
    await page.waitForFunction(() => document.body.dataset.state === "error", null, { timeout: 30000 });
    assert.ok(!(await page.innerHTML("#error")).includes("<img"), "user-controlled text must not become markup");
    assert.match(await page.textContent("#error"), /unknown backend/);
  } finally {
    await context.close();
  }
});

test("the page's scripts never write markup from strings (no innerHTML and friends)", () => {
  // User text reaches the page through textContent / DOM properties only; this pins it.
  const dir = path.join(h.ROOT, "www");
  const files = readdirSync(dir, { recursive: true }).filter((f) => f.endsWith(".js"));
  assert.ok(files.length >= 8, `scripts found: ${files}`);
  for (const f of files) {
    const code = readFileSync(path.join(dir, f), "utf8").replace(/\/\/.*$/gm, "");
    for (const bad of [/\.innerHTML\s*[+]?=/, /\.outerHTML\s*=/, /insertAdjacentHTML/, /document\.write/, /setAttribute\(\s*["']style["']/, /\beval\(/, /new Function\(/]) {
      assert.ok(!bad.test(code), `${f} uses ${bad}`);
    }
  }
});
