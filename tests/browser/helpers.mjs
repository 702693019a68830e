// Shared pieces of the browser tests: the static server for dist/, Debian's headless Chromium
// through playwright-core, request and CSP recording, waiting for the page, and comparisons.

import { before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serveDir } from "./static-server.mjs";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const DIST = path.resolve(ROOT, process.env.MONOSCOPE_DIST || "dist");
export const OUT = path.join(ROOT, "tests/out");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const NATIVE_JSON = process.env.MONOSCOPE_NATIVE_JSON || path.join(OUT, "native.json");
export const NATIVE_TINY_JSON = process.env.MONOSCOPE_NATIVE_TINY_JSON || path.join(OUT, "native-tiny.json");
// SwiftShader WebGPU is slow (shader compilation on the first call); be generous.
export const READY_TIMEOUT_MS = Number(process.env.MONOSCOPE_READY_TIMEOUT_MS || 5 * 60 * 1000);
export const MIN_COSINE = 0.999;
export const DEMO_IMAGES = JSON.parse(readFileSync(path.join(ROOT, "assets/demo/images/index.json"), "utf8"));
export const DEMO_MANIFEST = JSON.parse(readFileSync(path.join(ROOT, "assets/demo/bundle/manifest.json"), "utf8"));

export const CHROMIUM_ARGS = [
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

export function checkDist() {
  assert.ok(existsSync(path.join(DIST, "index.html")), `${DIST}/index.html not found: run \`trunk build --release\` first`);
  mkdirSync(OUT, { recursive: true });
}

export async function startServer(mounts = {}) {
  return serveDir(DIST, { mounts });
}

// Starts the static server for dist/ and Chromium before a test file's tests and stops them
// after; the returned object holds them ({server, browser}) once `before` has run.
export function suite(mounts = {}) {
  const env = { server: null, browser: null };
  before(async () => {
    checkDist();
    env.server = await startServer(mounts);
    env.browser = await startBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.close();
  });
  return env;
}

export async function startBrowser() {
  // playwright starts Chromium with a fresh temporary profile (--user-data-dir) of its own.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

// A fresh context and page that record every request (pages and their workers), console
// errors and CSP violations (from the securitypolicyviolation event, which CSP reports even
// when nothing is logged).
export async function newPage(browser, t, { colorScheme = "light", viewport = { width: 1200, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport, colorScheme });
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "(inline)"} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const page = await context.newPage();
  const requests = [];
  const consoleErrors = [];
  context.on("request", (req) => requests.push(req.url()));
  page.on("worker", (w) => w.on("console", (msg) => msg.type() === "error" && consoleErrors.push(`worker: ${msg.text()}`)));
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(msg.text());
    if (process.env.MONOSCOPE_TEST_VERBOSE) t?.diagnostic?.(`console.${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => consoleErrors.push(`pageerror: ${err.message}`));
  return { context, page, requests, consoleErrors };
}

// Waits until the page is idle (ready or error) after at least `runs` analysis passes.
export async function waitIdle(page, runs = 1, timeout = READY_TIMEOUT_MS) {
  await page.waitForFunction(
    (n) => {
      const m = window.__monoscope;
      const s = document.body.dataset.state;
      return m && (s === "error" || (m.runs >= n && s === "ready"));
    },
    runs,
    { timeout, polling: 100 },
  );
  return snapshot(page);
}

export function snapshot(page) {
  return page.evaluate(() => {
    const m = window.__monoscope;
    return {
      state: document.body.dataset.state,
      backend: m.backend,
      wasm: m.wasm,
      model: m.model,
      bundle: m.bundle,
      error: m.error,
      runs: m.runs,
      restarts: m.restarts,
      feature: m.feature,
      firstResultMs: m.firstResultMs,
      images: m.images,
      prompts: m.prompts,
    };
  });
}

export function cosine(a, b) {
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

export function loadNative(file = NATIVE_JSON) {
  assert.ok(
    existsSync(file),
    `native reference ${file} not found: scripts/test.sh writes it with \`monoscope embed ... --out ${file}\` (see tests/browser/README.md)`,
  );
  const native = JSON.parse(readFileSync(file, "utf8"));
  for (const key of ["images", "image_embeds", "texts", "text_embeds"]) {
    assert.ok(Array.isArray(native[key]) && native[key].length > 0, `native JSON: missing or empty "${key}"`);
  }
  return native;
}

export function assertSameOrigin(requests, origin) {
  const foreign = requests.filter((url) => {
    if (url.startsWith("data:")) return false;
    const u = new URL(url.startsWith("blob:") ? url.slice(5) : url);
    return u.origin !== origin;
  });
  assert.deepEqual(foreign, [], "every request must go to the page's own origin");
  assert.ok(requests.length > 0, "requests were recorded");
}

export async function assertNoCspViolations(page, consoleErrors) {
  const csp = consoleErrors.filter((m) => /Content Security Policy/i.test(m));
  assert.deepEqual(csp, [], "the page must not trip its own CSP (console)");
  const events = await page.evaluate(() => window.__cspViolations || []);
  assert.deepEqual(events, [], "the page must not trip its own CSP (securitypolicyviolation events)");
}

export async function screenshot(target, name) {
  const file = path.join(OUT, `${name}.png`);
  await target.screenshot({ path: file, ...(target.url ? { fullPage: true } : {}) });
  return file;
}

// Features in the per-input view: [{input, id, cls}] as the page shows them.
export function shownFeatures(page) {
  return page.$$eval("#features-view .input-card", (cards) =>
    cards.flatMap((card) =>
      Array.from(card.querySelectorAll(".feature-row"), (row) => ({
        input: card.dataset.key,
        id: Number(row.dataset.feature),
        cls: row.querySelector(".badge")?.textContent,
      })),
    ),
  );
}

// The bundle summary, or a failure that quotes the error the page shows next to the bundle.
export async function assertBundleLoaded(page, r) {
  if (r.bundle) return r.bundle;
  const shown = await page.evaluate(() => {
    const e = document.getElementById("bundle-error");
    return e && !e.hidden ? e.textContent : "(no bundle error shown)";
  });
  assert.fail(`the bundle did not load: ${shown}`);
}
