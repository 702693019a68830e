// <monoscope-widget> on a plain HTML course page of the same site renders the requested panels
// (and only those) in its iframe.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as h from "./helpers.mjs";

let server;
let browser;
let course;

before(async () => {
  h.checkDist();
  // A course page in another directory of the same site: /course/ (served from a temp dir),
  // the app at / (dist). The page loads the widget with a relative path, as a course would.
  course = mkdtempSync(path.join(tmpdir(), "monoscope-course-"));
  writeFileSync(
    path.join(course, "index.html"),
    `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Course: what CLIP features mean</title>
<script src="../widget.js" defer></script></head>
<body>
<h1>Lecture 7: modality-specific features</h1>
<p>Which features fire for this caption, and what does the dictionary look like?</p>
<monoscope-widget id="w1" panels="features,dictionary" backend="cpu"
  prompt="a big red circle|a small blue square" image="../assets/demo/images/${h.DEMO_IMAGES[2].file}"></monoscope-widget>
<p>And one feature in detail:</p>
<monoscope-widget id="w2" panels="feature" backend="cpu" feature="112" prompt="a red circle" height="700"></monoscope-widget>
</body>
</html>
`,
  );
  server = await h.startServer({ "/course/": course });
  browser = await h.startBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (course) rmSync(course, { recursive: true, force: true });
});

async function frameOf(page, id) {
  const handle = await page.waitForSelector(`#${id} >> iframe`);
  const frame = await handle.contentFrame();
  await frame.waitForFunction(
    () => window.__monoscope && (document.body.dataset.state === "error" || (document.body.dataset.state === "ready" && window.__monoscope.runs >= 1)),
    null,
    { timeout: h.READY_TIMEOUT_MS },
  );
  return { handle, frame };
}

function visiblePanels(frame) {
  return frame.$$eval("section[data-panel]", (ss) => ss.filter((s) => !s.hidden && s.offsetParent !== null).map((s) => s.dataset.panel));
}

test("the widget renders the requested panels inside its iframe", async (t) => {
  const { context, page, requests, consoleErrors } = await h.newPage(browser, t, { viewport: { width: 1000, height: 1400 } });
  try {
    await page.goto(`${server.origin}/course/`);
    const { handle, frame } = await frameOf(page, "w1");
    const src = await handle.getAttribute("src");
    t.diagnostic(`iframe src: ${src}`);
    const u = new URL(src);
    assert.equal(u.origin + u.pathname, `${server.origin}/index.html`, "the app next to widget.js");
    assert.equal(u.searchParams.get("embed"), "1");
    assert.equal(u.searchParams.get("panels"), "features,dictionary");
    assert.ok(await handle.getAttribute("title"), "the iframe has a title");

    assert.deepEqual(await visiblePanels(frame), ["features", "dictionary"]);
    assert.equal(await frame.evaluate(() => document.body.classList.contains("embed")), true);
    const r = await h.snapshot(frame);
    assert.equal(r.state, "ready", r.error);
    await h.assertBundleLoaded(frame, r);
    assert.deepEqual(r.prompts.map((p) => p.text), ["a big red circle", "a small blue square"]);
    assert.deepEqual(r.images.map((p) => [p.name, p.status]), [[h.DEMO_IMAGES[2].file, "ok"]]);
    assert.ok((await h.shownFeatures(frame)).length >= 3, "features shown");
    assert.ok(await frame.evaluate(() => !!window.Chart.getChart(document.getElementById("mds-chart"))), "histogram drawn");
    // The iframe grows to its content (the app reports its height to the same-site parent).
    await page.waitForFunction(() => document.querySelector("#w1").shadowRoot.querySelector("iframe").getBoundingClientRect().height > 600);
    await h.screenshot(page.locator("#w1"), "widget-features-dictionary");

    // The second widget: only the feature page, for feature 112.
    const second = await frameOf(page, "w2");
    assert.deepEqual(await visiblePanels(second.frame), ["feature"]);
    assert.match(await second.frame.textContent("#feature-title"), /#112\b/);
    const box = await second.handle.boundingBox();
    assert.equal(Math.round(box.height), 700, "height attribute");
    await second.handle.scrollIntoViewIfNeeded();
    await h.screenshot(page.locator("#w2"), "widget-feature");

    // Changing an attribute updates the iframe.
    await page.evaluate(() => document.querySelector("#w2").setAttribute("feature", "20"));
    const f2 = await (await page.waitForSelector("#w2 >> iframe")).contentFrame();
    await f2.waitForFunction(() => window.__monoscope?.feature === 20, null, { timeout: 60000 });

    h.assertSameOrigin(requests, server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
    await h.assertNoCspViolations(second.frame, []);
  } finally {
    await context.close();
  }
});
