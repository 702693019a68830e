// Loading a CLIP from the Hugging Face hub, offline: playwright answers
// https://huggingface.co/** with the files of assets/tiny-clip. The second load must come from
// Cache Storage (no second request reaches the hub). This is the only test whose page talks to
// another origin, so it is kept apart from the same-origin checks.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import * as h from "./helpers.mjs";

const REPO = "openai/clip-vit-base-patch32";
const FILES = ["config.json", "model.safetensors", "tokenizer.json"];

const env = h.suite();

// Answers https://huggingface.co/** like the hub for one repo whose files come from a local
// directory (404 for anything else); returns the list of requested paths.
async function mockHub(context, repo, files, dir) {
  const routed = [];
  await context.route("https://huggingface.co/**", async (route) => {
    const url = new URL(route.request().url());
    routed.push(url.pathname);
    const m = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/);
    if (!m || m[1] !== repo || !files.includes(m[2])) {
      await route.fulfill({ status: 404, body: "not found", headers: { "access-control-allow-origin": "*" } });
      return;
    }
    const body = readFileSync(path.join(h.ROOT, dir, m[2]));
    await route.fulfill({
      status: 200,
      body,
      headers: { "content-type": "application/octet-stream", "content-length": String(body.length), "access-control-allow-origin": "*" },
    });
  });
  return routed;
}

test("hub model: downloaded with progress, kept in Cache Storage, reused offline", async (t) => {
  const native = h.loadNative(h.NATIVE_TINY_JSON);
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  const routed = await mockHub(context, REPO, FILES, "assets/tiny-clip");
  try {
    const prompt = native.texts[0];
    await page.goto(`${env.server.origin}/?backend=cpu&prompt=${encodeURIComponent(prompt)}`);
    await h.waitIdle(page, 1);
    assert.equal(routed.length, 0, "nothing goes to the hub until the user asks");

    // A bad repo id is refused next to the field, without a request.
    await page.fill("#hub-repo", "not a repo");
    await page.click("#hub-load");
    await page.waitForSelector("#hub-error:not([hidden])");
    assert.equal(routed.length, 0);

    // A repo that is not there: the hub's 404 is shown next to the field.
    await page.fill("#hub-repo", "someone/missing-model");
    await page.click("#hub-load");
    await page.waitForFunction(() => /not found on the hub/.test(document.getElementById("hub-error").textContent));

    routed.length = 0;
    await page.fill("#hub-repo", REPO);
    await page.click("#hub-load");
    let r = await h.waitIdle(page, 2);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.equal(r.model.startsWith(`hf:${REPO}`), true, r.model);
    assert.deepEqual(routed.sort(), FILES.map((f) => `/${REPO}/resolve/main/${f}`).sort(), "the three files, once each");
    assert.match(await page.textContent("#hub-status"), /files ready/);
    const c = h.cosine(r.prompts[0].embedding, native.text_embeds[0]);
    t.diagnostic(`hub model: cos(prompt, native tiny-clip) = ${c.toFixed(6)}`);
    assert.ok(c >= h.MIN_COSINE);
    assert.equal(new URL(page.url()).searchParams.get("model"), `hf:${REPO}`, "the link names the hub model");
    const cached = await page.evaluate(async () => (await (await caches.open("monoscope-hub-v1")).keys()).map((k) => k.url));
    assert.equal(cached.length, 3);
    await h.screenshot(page.locator("#source-panel"), "hub-loaded");

    // A new page in the same browser profile, opened with the shared link: from the cache.
    routed.length = 0;
    const again = await context.newPage();
    await again.goto(page.url());
    r = await h.waitIdle(again, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.deepEqual(routed, [], "the second load must come from Cache Storage");
    assert.ok(h.cosine(r.prompts[0].embedding, native.text_embeds[0]) >= h.MIN_COSINE);
    assert.match(await again.textContent("#hub-status"), /files ready/);

    // Only our origin and the hub were contacted.
    const foreign = requests.filter((u) => !u.startsWith(env.server.origin) && !u.startsWith("https://huggingface.co/") && !u.startsWith("blob:") && !u.startsWith("data:"));
    assert.deepEqual(foreign, []);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

test("hub bundle: bundle=hf:owner/name downloads a bundle, cached; one for another model is refused", async (t) => {
  const BUNDLE_REPO = "someone/demo-bundle";
  const BUNDLE_FILES = ["manifest.json", "features.json", "dictionary.safetensors"];
  const { context, page, consoleErrors } = await h.newPage(env.browser, t);
  const routed = await mockHub(context, BUNDLE_REPO, BUNDLE_FILES, "assets/demo/bundle");
  try {
    // The demo model with the demo bundle, but from the hub.
    await page.goto(`${env.server.origin}/?backend=cpu&bundle=hf:${BUNDLE_REPO}`);
    let r = await h.waitIdle(page, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.ok(r.bundle, "a bundle is loaded");
    assert.deepEqual(r.bundle.class_counts, h.DEMO_MANIFEST.class_counts);
    assert.deepEqual(routed.sort(), BUNDLE_FILES.map((f) => `/${BUNDLE_REPO}/resolve/main/${f}`).sort());
    assert.ok(r.prompts[0].top?.length > 0, "features for the prompt");
    assert.equal(new URL(page.url()).searchParams.get("bundle"), `hf:${BUNDLE_REPO}`, "the link names the hub bundle");

    // Again in the same profile: from Cache Storage.
    routed.length = 0;
    const again = await context.newPage();
    await again.goto(page.url());
    r = await h.waitIdle(again, 1);
    assert.ok(r.bundle);
    assert.deepEqual(routed, [], "the second load must come from Cache Storage");

    // A 32-d bundle for the 16-d tiny-clip: refused with a message, the model keeps working.
    const other = await context.newPage();
    await other.goto(`${env.server.origin}/?backend=cpu&model=tiny-clip&bundle=hf:${BUNDLE_REPO}`);
    r = await h.waitIdle(other, 1);
    assert.equal(r.state, "ready", `page error: ${r.error}`);
    assert.equal(r.bundle, null);
    assert.match(await other.textContent("#bundle-error"), /reads 32-d embeddings but the model makes 16-d/);
    assert.match(await other.textContent("#features-view"), /Your own model/);

    // From the form: a missing bundle repo is reported next to the hub form.
    await other.fill("#hub-bundle-repo", "someone/missing-bundle");
    await other.click("#hub-bundle-load");
    await other.waitForFunction(() => /not found on the hub.*monoscope bundle/.test(document.getElementById("hub-error").textContent));
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});
