// Browser test for the monoscope web app (dist/, built by `trunk build --release`).
//
// Serves dist/ on 127.0.0.1, drives Debian's headless Chromium with playwright-core, and
// compares the page's embeddings with the native CLI's (MONOSCOPE_NATIVE_JSON, written by
// `monoscope embed --model assets/tiny-clip --image <demo image> --text "<prompt>" --out FILE`).
// Run: node --test tests/browser/   (scripts/test.sh does all of it)

import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serveDir } from "./static-server.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const DIST = path.resolve(ROOT, process.env.MONOSCOPE_DIST || "dist");
const OUT = path.join(ROOT, "tests/out");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const DEMO_IMAGE = path.join(ROOT, "tests/fixtures/images/astronaut.jpg");
const NATIVE_JSON = process.env.MONOSCOPE_NATIVE_JSON || path.join(OUT, "native.json");
// SwiftShader WebGPU is slow (shader compilation on the first call); be generous.
const READY_TIMEOUT_MS = Number(process.env.MONOSCOPE_READY_TIMEOUT_MS || 10 * 60 * 1000);
const MIN_COSINE = 0.999;

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--disable-default-apps",
  "--disable-domain-reliability",
  "--metrics-recording-only",
  // WebGPU: without this, requestAdapter() returns null in headless Chromium here; with it,
  // Chromium offers a SwiftShader (CPU) fallback adapter. See tests/browser/README.md.
  "--enable-unsafe-webgpu",
  ...(process.env.MONOSCOPE_CHROMIUM_ARGS ? process.env.MONOSCOPE_CHROMIUM_ARGS.split(/\s+/).filter(Boolean) : []),
];

function cosine(a, b) {
  assert.equal(a.length, b.length, `embedding sizes differ: ${a.length} vs ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

function loadNative() {
  assert.ok(
    existsSync(NATIVE_JSON),
    `native reference ${NATIVE_JSON} not found: set MONOSCOPE_NATIVE_JSON to the output of ` +
      "`monoscope embed --model assets/tiny-clip --image tests/fixtures/images/astronaut.jpg " +
      '--text "a photo of an astronaut" --out FILE` (scripts/test.sh does this)',
  );
  const native = JSON.parse(readFileSync(NATIVE_JSON, "utf8"));
  for (const key of ["images", "image_embeds", "texts", "text_embeds"]) {
    assert.ok(Array.isArray(native[key]) && native[key].length > 0, `native JSON: missing or empty "${key}"`);
  }
  return native;
}

let server;
let browser;
let webgpu = { available: false, reason: "not probed" };

async function newPage(t) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const requests = [];
  const consoleErrors = [];
  context.on("request", (req) => requests.push(req.url()));
  // Includes the engine worker's console (playwright reports dedicated workers' messages here).
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
    if (process.env.MONOSCOPE_TEST_VERBOSE) t.diagnostic(`console.${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => consoleErrors.push(`pageerror: ${err.message}`));
  return { context, page, requests, consoleErrors };
}

// Waits until the page has finished `runs` computations (ready or error) and returns state.
async function waitForRun(page, runs) {
  await page.waitForFunction(
    (n) =>
      window.__monoscope &&
      window.__monoscope.runs >= n &&
      (document.body.dataset.state === "ready" || document.body.dataset.state === "error"),
    runs,
    { timeout: READY_TIMEOUT_MS, polling: 250 },
  );
  return page.evaluate(() => ({ state: document.body.dataset.state, ...window.__monoscope }));
}

function assertSameOrigin(requests) {
  const foreign = requests.filter((url) => {
    if (url.startsWith("data:")) return false;
    const u = new URL(url.startsWith("blob:") ? url.slice(5) : url);
    return u.origin !== server.origin;
  });
  assert.deepEqual(foreign, [], "every request must go to the page's own origin");
}

function assertNoCspViolations(consoleErrors) {
  const csp = consoleErrors.filter((m) => /Content Security Policy/i.test(m));
  assert.deepEqual(csp, [], "the page must not trip its own CSP");
}

before(async () => {
  assert.ok(
    existsSync(path.join(DIST, "index.html")),
    `${DIST}/index.html not found: run \`trunk build --release\` first`,
  );
  mkdirSync(OUT, { recursive: true });
  server = await serveDir(DIST);
  // playwright starts Chromium with a fresh temporary profile (--user-data-dir) of its own.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  // Probe WebGPU from a page of the test origin (a secure context: 127.0.0.1).
  const page = await browser.newPage();
  await page.goto(`${server.origin}/demo/astronaut.jpg`);
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
});

after(async () => {
  await browser?.close();
  await server?.close();
});

for (const backend of ["cpu", "webgpu"]) {
  describe(`backend=${backend}`, () => {
    test("embeddings match the native CLI", async (t) => {
      if (backend === "webgpu" && !webgpu.available) {
        const msg = `NO WebGPU ADAPTER in this headless Chromium (${webgpu.reason}): the webgpu backend is NOT tested; cpu is.`;
        console.log(`# ${msg}`);
        t.skip(msg);
        return;
      }
      const native = loadNative();
      const { context, page, requests, consoleErrors } = await newPage(t);
      try {
        const t0 = Date.now();
        await page.goto(`${server.origin}/?backend=${backend}`);
        const r = await waitForRun(page, 1);
        const seconds = ((Date.now() - t0) / 1000).toFixed(1);
        await page.screenshot({ path: path.join(OUT, `page-${backend}.png`), fullPage: true });
        assert.equal(r.state, "ready", `page error: ${r.error}`);
        assert.equal(r.error, null);
        if (backend === "cpu") assert.equal(r.backend, "cpu");
        else assert.match(r.backend, /^webgpu/);
        const imageCos = cosine(r.image_embed, native.image_embeds[0]);
        const textCos = cosine(r.text_embed, native.text_embeds[0]);
        const nativeSim = cosine(native.image_embeds[0], native.text_embeds[0]);
        t.diagnostic(
          `backend "${r.backend}": ready in ${seconds} s; cos(image, native) = ${imageCos.toFixed(6)}, ` +
            `cos(text, native) = ${textCos.toFixed(6)}; similarity page ${r.similarity.toFixed(5)} vs native ${nativeSim.toFixed(5)}`,
        );
        assert.ok(imageCos >= MIN_COSINE, `image embedding differs from native: cosine ${imageCos}`);
        assert.ok(textCos >= MIN_COSINE, `text embedding differs from native: cosine ${textCos}`);
        assert.ok(Math.abs(r.similarity - nativeSim) < 5e-3, `similarity ${r.similarity} vs native ${nativeSim}`);
        // The page shows what it computed.
        assert.equal((await page.textContent("#backend")).trim(), r.backend);
        assert.equal((await page.textContent("#similarity")).trim(), r.similarity.toFixed(4));
        assertSameOrigin(requests);
        assertNoCspViolations(consoleErrors);
      } finally {
        await context.close();
      }
    });
  });
}

describe("errors and recovery (backend=cpu)", () => {
  test("a non-image file shows an error; a valid image works afterwards", async (t) => {
    const native = loadNative();
    const { context, page, requests, consoleErrors } = await newPage(t);
    try {
      await page.goto(`${server.origin}/?backend=cpu`);
      let r = await waitForRun(page, 1);
      assert.equal(r.state, "ready", `page error: ${r.error}`);

      await page.setInputFiles("#image-input", {
        name: "notes.txt",
        mimeType: "text/plain",
        buffer: Buffer.from("this is not an image\n"),
      });
      r = await waitForRun(page, 2);
      assert.equal(r.state, "error");
      assert.ok(r.error && r.error.length > 0, "window.__monoscope.error is set");
      assert.equal(r.image_embed, null);
      assert.ok(await page.isVisible("#error"), "the error is visible in the page");
      const shown = (await page.textContent("#error")).trim();
      assert.equal(shown, r.error);
      t.diagnostic(`error shown for a text file: ${shown}`);
      await page.screenshot({ path: path.join(OUT, "page-error.png"), fullPage: true });

      await page.setInputFiles("#image-input", DEMO_IMAGE);
      r = await waitForRun(page, 3);
      assert.equal(r.state, "ready", `page error: ${r.error}`);
      assert.ok(await page.isHidden("#error"), "the error is cleared");
      assert.ok(cosine(r.image_embed, native.image_embeds[0]) >= MIN_COSINE);
      assertSameOrigin(requests);
      assertNoCspViolations(consoleErrors);
    } finally {
      await context.close();
    }
  });

  test("a crashed engine worker is restarted", async (t) => {
    const { context, page, requests } = await newPage(t);
    try {
      await page.goto(`${server.origin}/?backend=cpu`);
      let r = await waitForRun(page, 1);
      assert.equal(r.state, "ready", `page error: ${r.error}`);
      const before = r.image_embed;
      await page.evaluate(() => window.__monoscopeDebug.crashWorker());
      await page.waitForFunction(() => window.__monoscope.restarts >= 1, null, { timeout: 30000 });
      // The page still answers: recompute with the restarted worker.
      await page.click("#run");
      r = await waitForRun(page, 2);
      assert.equal(r.state, "ready", `page error: ${r.error}`);
      assert.ok(cosine(r.image_embed, before) > 0.99999, "same result after the restart");
      assertSameOrigin(requests);
    } finally {
      await context.close();
    }
  });

  test("text is rendered as text, and an unknown backend is an error, not a dead page", async () => {
    const { context, page } = await newPage({ diagnostic() {} });
    try {
      await page.goto(`${server.origin}/?backend=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E`);
      await page.waitForFunction(() => document.body.dataset.state === "error", null, { timeout: 30000 });
      const html = await page.innerHTML("#error");
      assert.ok(!html.includes("<img"), "user-controlled text must not become markup");
      assert.match(await page.textContent("#error"), /unknown backend/);
    } finally {
      await context.close();
    }
  });
});

process.on("exit", () => {
  try {
    writeFileSync(path.join(OUT, "webgpu-adapter.json"), JSON.stringify(webgpu, null, 2) + "\n");
  } catch {
    // best effort
  }
});
