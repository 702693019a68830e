// The applications' panels (issue 6) on the demo model: the attribute probe (compared with
// the native CLI's counts), the PGD attack on the CPU backend and on WebGPU (SwiftShader),
// cancelling an attack, and modality-specific control with the demo decoder and exports.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import * as h from "./helpers.mjs";

const PROBE_NATIVE = process.env.MONOSCOPE_PROBE_JSON || path.join(h.OUT, "probe-native.json");

const env = h.suite();

async function openApps(t, backend, panels = "probe,attack,control") {
  const p = await h.newPage(env.browser, t);
  await p.page.goto(`${env.server.origin}/?backend=${backend}&panels=${panels}`);
  await p.page.waitForFunction(() => window.__monoscope?.bundle && window.__monoscopeDebug?.apps(), null, {
    timeout: h.READY_TIMEOUT_MS,
    polling: 100,
  });
  return p;
}

test("probe: demo groups give the native CLI's counts; removing CrossD breaks colour", async (t) => {
  const { page, context, requests, consoleErrors } = await openApps(t, "cpu", "probe");
  try {
    await page.getByRole("button", { name: /Load demo groups/ }).click();
    await page.waitForFunction(() => document.querySelectorAll(".probe-group .thumb").length >= 16, null, { timeout: 60_000 });
    await page.click("[data-testid=probe-run]");
    await page.waitForFunction(() => window.__monoscope.apps.probe, null, { timeout: h.READY_TIMEOUT_MS });
    const report = await page.evaluate(() => window.__monoscope.apps.probe);
    assert.equal(report.groups.length, 2);
    const acc = (g, v) => report.groups[g].accuracy.find((a) => a.variant === v);
    for (const g of [0, 1]) assert.equal(acc(g, "clip").total, 16);
    // Colour is shared: the blue group collapses without CrossD features.
    assert.ok(acc(1, "without CrossD").correct < acc(1, "clip").correct, JSON.stringify(report.groups[1].accuracy));
    const rows = await page.$$eval(".probe-group-result tbody tr", (trs) => trs.length);
    assert.equal(rows, 2 * 5, "five variants per group");
    const badges = await page.$$eval(".movers .badge", (bs) => bs.map((b) => b.textContent));
    assert.ok(badges.length > 0 && badges.every((b) => ["ImgD", "TextD", "CrossD", "Rare"].includes(b)));
    if (existsSync(PROBE_NATIVE)) {
      const native = JSON.parse(readFileSync(PROBE_NATIVE, "utf8"));
      for (const g of [0, 1]) {
        const counts = (r) => r.groups[g].accuracy.map((a) => `${a.variant}:${a.correct}/${a.total}`);
        assert.deepEqual(counts(report), counts(native), `group ${g}: page vs native CLI`);
      }
    } else {
      assert.fail(`${PROBE_NATIVE} missing: scripts/test.sh writes it with \`monoscope probe ... --json\``);
    }
    await h.screenshot(page.locator("#probe-panel"), "app-probe");
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});

async function runAttack(page, { steps, eps = 8 }) {
  await page.getByRole("button", { name: "Use a demo image" }).click();
  await page.waitForFunction(() => !document.querySelector(".attack-input .thumb").hidden, null, { timeout: 30_000 });
  await page.fill("#attack-view input[aria-label='PGD steps']", String(steps));
  await page.fill("#attack-view input[aria-label='epsilon in 1/255 units']", String(eps));
  await page.click("[data-testid=attack-run]");
}

for (const backend of ["cpu", "webgpu"]) {
  test(`attack runs on ${backend}: progress, clean/adversarial/difference images, report`, async (t) => {
    const { page, context, requests, consoleErrors } = await openApps(t, backend, "attack");
    try {
      const label = await page.evaluate(() => window.__monoscope.backend);
      t.diagnostic(`backend: ${label}`);
      assert.ok(label.startsWith(backend), `asked for ${backend}, got ${label}`);
      const steps = backend === "cpu" ? 10 : 3; // SwiftShader is slow; the path is what counts
      await runAttack(page, { steps });
      await page.waitForFunction(() => window.__monoscope.apps.attack || document.querySelector("#attack-view .error"), null, {
        timeout: h.READY_TIMEOUT_MS,
      });
      const error = await page.$eval("#attack-view", (v) => v.querySelector(".error")?.textContent ?? null);
      assert.equal(error, null, `attack error: ${error}`);
      const rep = await page.evaluate(() => window.__monoscope.apps.attack);
      assert.equal(await page.evaluate(() => window.__monoscope.apps.attackSteps), steps);
      assert.ok(rep.linf <= 8 / 255 + 1e-5 && rep.linf > 0, `L-inf ${rep.linf}`);
      assert.ok(rep.labels.includes(rep.target) && rep.labels.includes(rep.adversarial));
      assert.equal(typeof rep.success, "boolean");
      assert.ok(rep.adversarial_similarity > rep.clean_similarity, "the image moved toward the target");
      // Three canvases with real pixels: the difference is not flat grey.
      const canvases = await page.$$eval("#attack-view canvas", (cs) =>
        cs.map((c) => {
          const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          let min = 255;
          let max = 0;
          for (let i = 0; i < d.length; i += 4) {
            min = Math.min(min, d[i]);
            max = Math.max(max, d[i]);
          }
          return { w: c.width, min, max };
        }),
      );
      assert.equal(canvases.length, 3);
      assert.ok(canvases[2].max - canvases[2].min > 10, "the difference image shows the perturbation");
      t.diagnostic(`${backend}: ${rep.clean} -> ${rep.adversarial} (target ${rep.target}), success ${rep.success}`);
      if (backend === "cpu") {
        // Demo image scene-1 is a big red box; at 8/255 and 10 steps the attack succeeds.
        assert.equal(rep.success, true, JSON.stringify(rep));
        await h.screenshot(page.locator("#attack-panel"), "app-attack");
      }
      h.assertSameOrigin(requests, env.server.origin);
      await h.assertNoCspViolations(page, consoleErrors);
    } finally {
      await context.close();
    }
  });
}

test("attack can be cancelled between steps; the next attack still runs", async (t) => {
  const { page, context } = await openApps(t, "cpu", "attack");
  try {
    await runAttack(page, { steps: 400 });
    await page.waitForFunction(() => (window.__monoscope.apps.attackSteps || 0) >= 2, null, { timeout: 120_000 });
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.waitForFunction(() => window.__monoscope.apps.attackCancelled === true, null, { timeout: 60_000 });
    const status = await page.textContent("#attack-view .app-status");
    assert.match(status, /cancelled after \d+ step/);
    assert.ok((await page.evaluate(() => window.__monoscope.apps.attackSteps)) < 400);
    await page.fill("#attack-view input[aria-label='PGD steps']", "2");
    await page.click("[data-testid=attack-run]");
    await page.waitForFunction(() => window.__monoscope.apps.attack, null, { timeout: 120_000 });
  } finally {
    await context.close();
  }
});

test("attack: the target choices follow the labels, and a chosen target is attacked", async (t) => {
  const { page, context } = await openApps(t, "cpu", "attack");
  try {
    // The demo image comes with demo labels; the user's labels replace them afterwards.
    await page.getByRole("button", { name: "Use a demo image" }).click();
    await page.waitForFunction(() => !document.querySelector(".attack-input .thumb").hidden, null, { timeout: 30_000 });
    const labelBox = "#attack-view textarea[aria-label='zero-shot labels, one per line']";
    const select = "#attack-view select[aria-label='target label']";
    const options = () => page.$$eval(`${select} option`, (os) => os.map((o) => o.textContent));
    await page.fill(labelBox, "a big red box\na small blue circle\na green triangle");
    assert.deepEqual(await options(), ["nearest wrong label", "a big red box", "a small blue circle", "a green triangle"]);
    await page.selectOption(select, "2");
    await page.fill("#attack-view input[aria-label='PGD steps']", "2");
    await page.click("[data-testid=attack-run]");
    await page.waitForFunction(() => window.__monoscope.apps.attack, null, { timeout: 120_000 });
    const rep = await page.evaluate(() => window.__monoscope.apps.attack);
    assert.equal(rep.target, "a green triangle");
  } finally {
    await context.close();
  }
});

test("control: removing CrossD changes the decoded image; exports are valid files", async (t) => {
  const { page, context, requests, consoleErrors } = await openApps(t, "cpu", "control");
  try {
    await page.waitForFunction(() => window.__monoscope.apps.control?.image_after, null, { timeout: 120_000 });
    const before = await page.evaluate(() => window.__monoscope.apps.control);
    assert.ok(Math.abs(before.cosine - 1) < 1e-4, `all scales 1: the original embedding (cosine ${before.cosine})`);
    const slider = page.locator("input[data-cls=CrossD]");
    await slider.focus();
    await slider.fill("0");
    await page.waitForFunction(() => window.__monoscope.apps.control.cosine < 0.999, null, { timeout: 60_000 });
    const after = await page.evaluate(() => window.__monoscope.apps.control);
    let change = 0;
    for (let i = 0; i < after.image_after.length; i++) change += Math.abs(after.image_after[i] - before.image_after[i]);
    change /= after.image_after.length;
    t.diagnostic(`cosine ${after.cosine.toFixed(4)}, mean |pixel change| ${change.toFixed(2)} / 255`);
    assert.ok(change > 2, "the decoded image changes visibly");
    await h.screenshot(page.locator("#control-panel"), "app-control");

    const [npy] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download .npy" }).click()]);
    const npyBytes = readFileSync(await npy.path());
    assert.equal(npyBytes.subarray(0, 6).toString("latin1"), "\x93NUMPY");
    assert.ok(npyBytes.toString("latin1", 10, 80).includes("'shape': (1, 32)"));
    const [st] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download .safetensors" }).click()]);
    const stBytes = readFileSync(await st.path());
    const headerLen = Number(stBytes.readBigUInt64LE(0));
    const header = JSON.parse(stBytes.toString("utf8", 8, 8 + headerLen));
    assert.deepEqual(header.embedding.shape, [1, 32]);
    assert.equal(header.__metadata__.prompt, "a red circle");
    assert.equal(stBytes.length, 8 + headerLen + 32 * 4);
    h.assertSameOrigin(requests, env.server.origin);
    await h.assertNoCspViolations(page, consoleErrors);
  } finally {
    await context.close();
  }
});
