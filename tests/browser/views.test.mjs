// The views: image <-> prompt similarity and pair features, the dictionary (histogram, counts,
// search), the feature page, the patch heatmap, the shareable URL, keyboard use and the dark
// theme. CPU backend, demo model and bundle. Screenshots of each view go to tests/out/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import * as h from "./helpers.mjs";

const FEATURES = JSON.parse(readFileSync(path.join(h.ROOT, "assets/demo/bundle/features.json"), "utf8"));

let server;
let browser;
let shared; // one page for the read-only view checks
let sharedRequests;
let sharedConsole;

before(async () => {
  h.checkDist();
  server = await h.startServer();
  browser = await h.startBrowser();
  const img = (i) => `assets/demo/images/${h.DEMO_IMAGES[i].file}`;
  const q = new URLSearchParams();
  q.set("backend", "cpu");
  q.append("image", img(0));
  q.append("image", img(1));
  q.append("prompt", h.DEMO_IMAGES[0].caption);
  q.append("prompt", h.DEMO_IMAGES[1].caption);
  q.append("prompt", "a small blue triangle");
  const p = await h.newPage(browser, null);
  shared = p;
  sharedRequests = p.requests;
  sharedConsole = p.consoleErrors;
  await p.page.goto(`${server.origin}/?${q}`);
  const r = await h.waitIdle(p.page, 1);
  assert.equal(r.state, "ready", `page error: ${r.error}`);
  await h.assertBundleLoaded(p.page, r);
});

after(async () => {
  await shared?.context.close();
  await browser?.close();
  await server?.close();
});

test("similarity matrix: cosines of the embeddings; a chosen pair lists shared and one-sided features", async (t) => {
  const { page } = shared;
  const r = await h.snapshot(page);
  const cells = await page.$$eval("#similarity-view .sim-cell", (bs) => bs.map((b) => ({ image: b.dataset.image, prompt: b.dataset.prompt, value: Number(b.textContent), pressed: b.getAttribute("aria-pressed") })));
  assert.equal(cells.length, 2 * 3, "one cell per image and prompt");
  for (const c of cells) {
    const im = r.images.find((x) => x.key === c.image);
    const p = r.prompts.find((x) => x.key === c.prompt);
    assert.ok(Math.abs(c.value - h.cosine(im.embedding, p.embedding)) < 6e-4, "cell shows the cosine");
  }
  // Each demo image is closer to its own caption than to the other image's caption.
  const cell = (i, j) => cells.find((c) => c.image === r.images[i].key && c.prompt === r.prompts[j].key).value;
  t.diagnostic(`matrix: ${[0, 1].map((i) => [0, 1, 2].map((j) => cell(i, j).toFixed(3)).join(" ")).join(" / ")}`);
  assert.ok(cell(0, 0) > cell(0, 1) && cell(1, 1) > cell(1, 0), "matching pairs score higher");

  // Choose image 2 x prompt 2 (keyboard: focus the cell, press Enter).
  const target = `#similarity-view .sim-cell[data-image="${r.images[1].key}"][data-prompt="${r.prompts[1].key}"]`;
  await page.focus(target);
  await page.keyboard.press("Enter");
  await page.waitForSelector(`${target}[aria-pressed="true"]`);
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.image !== undefined), true, "focus stays on the cell");
  const lists = await page.$$eval("#similarity-view .pair-list", (ss) =>
    Object.fromEntries(ss.map((s) => [s.className.replace("pair-list pair-", ""), Array.from(s.querySelectorAll("tr[data-feature]"), (tr) => Number(tr.dataset.feature))])),
  );
  const a = r.images[1].top.map(([k]) => k);
  const b = r.prompts[1].top.map(([k]) => k);
  assert.deepEqual(new Set(lists.shared), new Set(a.filter((k) => b.includes(k)).slice(0, 10)));
  for (const k of lists.image) assert.ok(a.includes(k) && !b.includes(k), `#${k} only on the image side`);
  for (const k of lists.prompt) assert.ok(b.includes(k) && !a.includes(k), `#${k} only on the prompt side`);
  assert.ok(lists.shared.length + lists.image.length + lists.prompt.length > 0);
  await h.screenshot(page.locator("#similarity-panel"), "similarity");
});

test("dictionary: MDS histogram with thresholds, class counts, searchable list", async () => {
  const { page } = shared;
  // Chart.js drew the histogram: one stacked dataset per class present, counts adding up.
  const chart = await page.evaluate(() => {
    const c = window.Chart.getChart(document.getElementById("mds-chart"));
    return c && { labels: c.data.datasets.map((d) => d.label), total: c.data.datasets.reduce((s, d) => s + d.data.reduce((a, p) => a + p.y, 0), 0), lines: c.options.plugins.monoscopeMarkers.lines.map((l) => l.value), w: c.width };
  });
  assert.ok(chart, "a Chart.js chart on #mds-chart");
  assert.ok(chart.w > 100, "the chart has a size");
  const scored = FEATURES.features.filter((f) => Number.isFinite(f.mds));
  assert.equal(chart.total, scored.length, "every scored feature is in the histogram");
  for (const c of ["ImgD", "TextD", "CrossD"]) assert.ok(chart.labels.includes(c), `${c} dataset`);
  assert.ok(Math.abs(chart.lines[0] - h.DEMO_MANIFEST.thresholds.text) < 1e-9 && Math.abs(chart.lines[1] - h.DEMO_MANIFEST.thresholds.img) < 1e-9, "threshold lines");
  // Class counts as in the manifest.
  const counts = await page.$$eval("#dictionary-summary .class-counts li", (lis) => lis.map((li) => [li.dataset.class, Number(li.querySelector(".count").textContent)]));
  assert.deepEqual(counts.map(([, n]) => n), h.DEMO_MANIFEST.class_counts);

  const listed = () => page.$$eval("#feature-list li", (lis) => lis.map((li) => ({ id: Number(li.dataset.feature), cls: li.dataset.class })));
  assert.equal((await listed()).length, FEATURES.features.length, "all features listed");
  // By class.
  await page.selectOption("#class-filter", "ImgD");
  let rows = await listed();
  assert.equal(rows.length, h.DEMO_MANIFEST.class_counts[0]);
  assert.ok(rows.every((r) => r.cls === "ImgD"));
  await page.selectOption("#class-filter", "");
  // By id.
  await page.fill("#feature-search", "#42");
  rows = await listed();
  assert.deepEqual(rows.map((r) => r.id), [42]);
  // By label.
  const word = "red";
  await page.fill("#feature-search", word);
  rows = await listed();
  const expected = FEATURES.features.filter((f) => f.labels.some(([l]) => l.toLowerCase().includes(word))).map((f) => f.id);
  assert.deepEqual(rows.map((r) => r.id), expected);
  assert.ok(expected.length > 0);
  // By class word in the search box, combined with a label.
  await page.fill("#feature-search", `crossd ${word}`);
  rows = await listed();
  assert.ok(rows.every((r) => r.cls === "CrossD") && rows.length <= expected.length);
  await page.fill("#feature-search", "");
  await h.screenshot(page.locator("#dictionary-panel"), "dictionary");
});

test("feature page: facts, labels, example images drawn from the bundle, activation on the inputs", async () => {
  const { page } = shared;
  const r = await h.snapshot(page);
  const id = r.images[0].top[0][0];
  const f = FEATURES.features.find((x) => x.id === id);
  // Keyboard: Tab onto the feature's button in the features view, then Enter.
  await page.focus(`#features-view .input-card[data-key="${r.images[0].key}"] button.feature-link[data-feature="${id}"]`);
  await page.keyboard.press("Enter");
  await page.waitForFunction((k) => window.__monoscope.feature === k, id);
  assert.equal(await page.evaluate(() => document.activeElement?.id), "feature-title", "focus moves to the feature page");
  assert.match(await page.textContent("#feature-title"), new RegExp(`#${id}\\b`));
  assert.equal(await page.textContent("#feature-title .badge"), f.class);
  const facts = await page.$$eval("#feature-view .feature-facts div", (ds) => Object.fromEntries(ds.map((d) => [d.querySelector("dt").textContent, d.querySelector("dd").textContent])));
  assert.equal(facts.MDS.split(" ")[0], f.mds === null ? "–" : f.mds.toFixed(3));
  assert.match(facts.support, new RegExp(`^${f.support} `));
  assert.equal(facts["EmbSim (images)"], f.emb_sim_image.toFixed(3));
  const labels = await page.$$eval("#feature-view .label-list .label-text", (ls) => ls.map((l) => l.textContent));
  assert.deepEqual(labels, f.labels.map(([l]) => l));
  // Example images are demo scenes, redrawn by the engine into canvases (not blank).
  await page.waitForFunction(() => document.querySelectorAll("#feature-view canvas.scene[data-drawn]").length > 0);
  const drawn = await page.$$eval("#feature-view canvas.scene[data-drawn]", (cs) =>
    cs.map((c) => {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      const colours = new Set();
      for (let i = 0; i < d.length; i += 4 * 7) colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      return colours.size;
    }),
  );
  assert.equal(drawn.length, Math.min(8, f.top_images.length));
  assert.ok(drawn.every((n) => n > 3), `example images have content (${drawn})`);
  const texts = await page.$$eval("#feature-view .example-texts q", (qs) => qs.map((q) => q.textContent));
  assert.deepEqual(texts, f.top_texts.slice(0, 10).map(([row]) => FEATURES.examples[String(row)].caption));
  // Activation on the current inputs.
  const acts = await page.$$eval("#feature-view .current-acts li", (lis) => lis.map((li) => [li.dataset.key, li.querySelector(".num").textContent]));
  assert.equal(acts.length, r.images.length + r.prompts.length);
  const mine = r.images[0].top[0][1];
  assert.equal(acts.find(([k]) => k === r.images[0].key)[1], mine.toFixed(3));
  // The histogram marks the feature.
  const marked = await page.evaluate(() => window.Chart.getChart(document.getElementById("mds-chart")).options.plugins.monoscopeMarkers.lines.map((l) => l.label));
  assert.ok(marked.includes(`#${id}`));
  await h.screenshot(page.locator("#feature-panel"), "feature-page");
});

test("patch heatmap: one value per patch of the 8x8 grid, drawn over the image", async (t) => {
  const { page } = shared;
  await page.click("#heatmap-run");
  await page.waitForSelector("#heatmap-canvas[data-drawn]", { timeout: 120000 });
  const info = await page.$eval("#heatmap-canvas", (c) => ({ rows: Number(c.dataset.rows), cols: Number(c.dataset.cols), feature: Number(c.dataset.feature), label: c.getAttribute("aria-label") }));
  assert.deepEqual([info.rows, info.cols], [8, 8]);
  assert.equal(info.feature, await page.evaluate(() => window.__monoscope.feature));
  t.diagnostic(info.label);
  assert.match(info.label, /Strongest patches|No patch lowers/);
  // Switching the feature redraws from the same run (no new computation).
  const r = await h.snapshot(page);
  const other = r.images[0].top[1][0];
  await page.click(`#features-view .input-card[data-key="${r.images[0].key}"] button.feature-link[data-feature="${other}"]`);
  await page.waitForSelector(`#heatmap-canvas[data-feature="${other}"][data-drawn]`);
  await h.screenshot(page.locator("#heatmap-panel"), "heatmap");
});

test("the URL holds the state: a copied link restores prompts, images and the feature", async () => {
  const { page } = shared;
  await page.fill("#new-prompt", "a big green square");
  await page.press("#new-prompt", "Enter");
  await h.waitIdle(page, 1);
  const url = page.url();
  const q = new URL(url).searchParams;
  assert.deepEqual(q.getAll("prompt").at(-1), "a big green square");
  assert.equal(q.getAll("image").length, 2);
  assert.ok(q.has("feature"));
  const r1 = await h.snapshot(page);

  const { context, page: again } = await h.newPage(browser, null);
  try {
    await again.goto(url);
    const r2 = await h.waitIdle(again, 1);
    assert.deepEqual(r2.prompts.map((p) => p.text), r1.prompts.map((p) => p.text));
    assert.deepEqual(r2.images.map((p) => p.name), r1.images.map((p) => p.name));
    assert.equal(r2.feature, r1.feature);
    assert.match(await again.textContent("#feature-title"), new RegExp(`#${r1.feature}\\b`));
  } finally {
    await context.close();
  }
});

test("keyboard: every control has a label and can be reached with Tab", async () => {
  const { page } = shared;
  const unlabelled = await page.$$eval("input, select, button, textarea", (els) =>
    els
      .filter((e) => !e.closest("[hidden]") && e.type !== "hidden")
      .filter((e) => {
        const named = e.labels?.length || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby") || (e.tagName === "BUTTON" && e.textContent.trim());
        return !named;
      })
      .map((e) => e.outerHTML.slice(0, 80)),
  );
  assert.deepEqual(unlabelled, [], "controls without a label");
  // Tab through the whole page from the skip link and collect what gets focus.
  await page.focus(".skip-link");
  const seen = new Set();
  for (let i = 0; i < 400; i++) {
    await page.keyboard.press("Tab");
    const id = await page.evaluate(() => {
      const e = document.activeElement;
      return e ? e.id || e.dataset.focusKey || e.tagName : null;
    });
    seen.add(id);
    if (id === "bundle-none") break; // the last control of the page
  }
  const want = ["image-input", "new-prompt", "add-prompt", "rerun", "feature-search", "class-filter", "heatmap-run", "builtin-model", "hub-repo", "hub-load", "model-files", "bundle-files", "bundle-none"];
  for (const w of want) assert.ok(seen.has(w), `${w} reached by Tab (${[...seen].join(", ")})`);
  assert.ok([...seen].some((s) => /-f\d+$/.test(s)), "feature buttons reached by Tab");
});

test("no foreign requests and no CSP violations across the views", async () => {
  h.assertSameOrigin(sharedRequests, server.origin);
  await h.assertNoCspViolations(shared.page, sharedConsole);
});

test("dark theme: readable colours, class badges distinct", async () => {
  const { context, page, consoleErrors } = await h.newPage(browser, null, { colorScheme: "dark" });
  try {
    await page.goto(`${server.origin}/?backend=cpu`);
    await h.waitIdle(page, 1);
    const colours = await page.evaluate(() => {
      const bg = getComputedStyle(document.body).backgroundColor;
      const badges = {};
      for (const c of ["ImgD", "TextD", "CrossD", "Rare"]) {
        const b = document.querySelector(`.legend .badge-${c}`);
        badges[c] = { bg: getComputedStyle(b).backgroundColor, fg: getComputedStyle(b).color };
      }
      return { bg, fg: getComputedStyle(document.body).color, badges };
    });
    const rgb = (s) => s.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
    const lum = (c) => {
      const [r, g, b] = rgb(c).map((v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const contrast = (a, b) => (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
    assert.ok(lum(colours.bg) < 0.05, `dark background (${colours.bg})`);
    assert.ok(contrast(colours.fg, colours.bg) >= 7, "body text contrast");
    const bgs = Object.values(colours.badges).map((b) => b.bg);
    assert.equal(new Set(bgs).size, 4, "four distinct class colours");
    for (const [c, b] of Object.entries(colours.badges)) assert.ok(contrast(b.fg, b.bg) >= 4.5, `${c} badge text contrast ${contrast(b.fg, b.bg).toFixed(2)}`);
    await h.screenshot(page, "dark-theme");
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});
