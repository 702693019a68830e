// Hostile inputs in the page (issue 13, item 3; a first part): a bundle whose labels and
// example texts carry markup and whose example image paths point off-site, a manifest that
// declares 10^8 features, a PNG that declares 30000 x 30000 pixels, and a 100 kB prompt. The
// page stays alive, renders all text as text, requests nothing off-site, shows clear errors
// and keeps the bundle it had.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import * as h from "./helpers.mjs";

const env = h.suite();
const DIR = path.join(h.OUT, "hostile");
const DEMO = path.join(h.ROOT, "assets/demo/bundle");
const MARKUP = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>`;

function bundleDir(name, edit) {
  const dir = path.join(DIR, name);
  mkdirSync(dir, { recursive: true });
  const manifest = JSON.parse(readFileSync(path.join(DEMO, "manifest.json"), "utf8"));
  const features = JSON.parse(readFileSync(path.join(DEMO, "features.json"), "utf8"));
  edit(manifest, features);
  writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest));
  writeFileSync(path.join(dir, "features.json"), JSON.stringify(features));
  copyFileSync(path.join(DEMO, "dictionary.safetensors"), path.join(dir, "dictionary.safetensors"));
  return ["manifest.json", "features.json", "dictionary.safetensors"].map((f) => path.join(dir, f));
}

// A PNG with only a header: 30000 x 30000 RGBA declared, no pixel data.
function hugePng() {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(30000, 0);
  ihdr.writeUInt32BE(30000, 4);
  ihdr[8] = 8;
  ihdr[9] = 6;
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([sig, chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(Buffer.alloc(1))), chunk("IEND", Buffer.alloc(0))]);
}

test("hostile bundles, a 30000x30000 PNG and a 100 kB prompt: the page stays alive", async (t) => {
  mkdirSync(DIR, { recursive: true });
  const markup = bundleDir("markup", (m, f) => {
    for (const feat of f.features) feat.labels = feat.labels.map(([, v]) => [MARKUP, v]);
    for (const ex of Object.values(f.examples)) {
      ex.caption = MARKUP;
      ex.image = "https://evil.example/steal.png";
    }
  });
  const huge = bundleDir("huge", (m) => {
    m.dictionary.config.features = 100_000_000;
  });
  const png = path.join(DIR, "huge.png");
  writeFileSync(png, hugePng());
  const { context, page, requests, consoleErrors } = await h.newPage(env.browser, t);
  try {
    await page.goto(`${env.server.origin}/?backend=cpu`);
    await h.waitIdle(page, 1);

    // Markup in labels and example texts stays text; off-site example paths are not fetched.
    await page.setInputFiles("#bundle-files", markup);
    await page.waitForFunction(() => /markup|features\.json/.test(document.getElementById("bundle").textContent) && window.__monoscope.state === "ready", null, {
      timeout: h.READY_TIMEOUT_MS,
    });
    const id = (await h.shownFeatures(page))[0].id;
    await page.click(`#features-view button.feature-link[data-feature="${id}"] >> nth=0`);
    await page.waitForSelector("#feature-view .example-path");
    assert.match(await page.textContent("#feature-view"), /<img src=x onerror=/);
    assert.equal(await page.evaluate(() => document.querySelectorAll('img[src="x"], #feature-view script').length), 0);
    assert.equal(await page.evaluate(() => window.__pwned ?? null), null);

    // 10^8 declared features: refused next to the picker; the bundle it had stays.
    const before = (await h.snapshot(page)).bundle;
    await page.setInputFiles("#bundle-files", huge);
    await page.waitForSelector("#bundle-error:not([hidden])");
    const why = await page.textContent("#bundle-error");
    t.diagnostic(`10^8 features: ${why}`);
    const after = await h.snapshot(page);
    assert.deepEqual(after.bundle, before, "the previous bundle stays");
    assert.equal(after.restarts, 0, "no engine crash");

    // A PNG declaring 900 M pixels is refused from its header on its own card.
    const runs = after.runs;
    await page.setInputFiles("#image-input", [png]);
    const r = await h.waitIdle(page, runs + 1);
    const card = r.images.find((x) => x.name === "huge.png");
    // Natively the pixel count is named; in wasm the PNG decoder's own limit trips first.
    assert.match(card?.error ?? "", /more than the 67108864 (pixels )?accepted/);
    t.diagnostic(`30000x30000 PNG: ${card.error}`);
    assert.equal(r.restarts, 0);

    // A 100 kB prompt (set by script: the field's maxlength stops typing at 2000) is
    // analysed, truncated to the model's context.
    const long = "a big red circle ".repeat(6000).slice(0, 100_000);
    const runs2 = (await h.snapshot(page)).runs;
    await page.evaluate((text) => {
      document.getElementById("new-prompt").value = text;
      document.getElementById("prompt-form").requestSubmit();
    }, long);
    const r2 = await h.waitIdle(page, runs2 + 1);
    assert.equal(r2.state, "ready", `page error: ${r2.error}`);
    const p = r2.prompts.find((x) => x.text === long.trim());
    assert.ok(p, "the long prompt is an input");
    assert.equal(p.truncated, true);

    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});
