// Test and console hooks. window.__monoscope: read-only views of the state (the browser tests,
// budgets script and widget tests wait on these). window.__monoscopeDebug: crashing the
// worker and the applications' panels, for the tests.

import { state, runtime, views } from "./state.js";

const TOP = 16; // features listed per input

function topFeatures(activations) {
  if (!activations) return [];
  return Array.from(activations, (v, i) => [i, v])
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP);
}

// A plain copy of an input: page.evaluate() can return it, and tests cannot change the page.
function inputSnapshot(x) {
  return {
    key: x.key,
    name: x.name ?? null,
    text: x.text ?? null,
    status: x.status,
    error: x.error ?? null,
    embedding: x.embedding ? Array.from(x.embedding) : null,
    truncated: x.truncated ?? null,
    top: topFeatures(x.activations),
  };
}

// apps: {result: {probe, attack, control, ...}} as the applications' panels fill it.
export function installStateHook(apps) {
  window.__monoscope = {
    get state() {
      return document.body.dataset.state;
    },
    get backend() {
      return state.model.backend;
    },
    // The wasm build the engine worker loaded: "relaxed SIMD" or "SIMD128".
    get wasm() {
      return state.model.wasm;
    },
    get model() {
      return state.model.label;
    },
    get modelHash() {
      return state.model.hash;
    },
    get bundle() {
      return state.bundle ? state.bundle.summary : null;
    },
    get error() {
      return state.error;
    },
    get runs() {
      return state.runs;
    },
    get restarts() {
      return state.restarts;
    },
    // Engines sharing the next batch (1 + helpers holding the model and bundle), the calls
    // each helper has served, the single images whose pass was cut between the engines, and
    // the last such pass's timing per part (worker.js split_run).
    get engines() {
      const e = runtime.engine;
      return e
        ? { parallelism: e.parallelism, helperCalls: e.helpers.map((h) => h.calls), splitPasses: e.splitPasses, splitTiming: e.splitTiming }
        : null;
    },
    // Inputs per engine call of the analysis queue (issue 12), oldest first.
    get batchSizes() {
      return [...state.batchSizes];
    },
    get feature() {
      return state.feature;
    },
    // The dictionary view's last comparison (issue 15), or null.
    get comparison() {
      return views.compare?.last ?? null;
    },
    get firstResultMs() {
      return state.firstResultMs;
    },
    get loadProgress() {
      return JSON.parse(JSON.stringify(state.loadProgress));
    },
    get apps() {
      return apps.result;
    },
    get images() {
      return state.images.map(inputSnapshot);
    },
    get prompts() {
      return state.prompts.map(inputSnapshot);
    },
  };
}

// apps.api: the mounted panels' functions (null until they are mounted).
export function installDebugHook(apps) {
  window.__monoscopeDebug = {
    crashWorker: () => runtime.engine.crashForTest(),
    crashHelperInSplit: (round) => runtime.engine.crashHelperInSplitForTest(round),
    holdEngine: (ms) => runtime.engine.holdForTest(ms),
    apps: () => apps.api,
    // Engine round trips, timed by the real-size test: ms per call, median of `n`.
    async timeCalls(kind, input, n = 3) {
      const ms = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        if (kind === "image") await runtime.engine.analyzeImage(input);
        else await runtime.engine.analyzeText(input);
        ms.push(performance.now() - t0);
      }
      return ms.sort((a, b) => a - b)[Math.floor(n / 2)];
    },
    embedImages: (list) => runtime.engine.embedImages(list),
    // One input alone (a batch of one), to compare with what the queue's batches gave;
    // `{whole: true}`: on the main engine alone, never cut between engine workers.
    analyzeImage: (bytes, opts) => runtime.engine.analyzeImage(bytes, opts),
    analyzeText: (text) => runtime.engine.analyzeText(text),
    // ms per image of embedding `batch` copies of `bytes` in one forward pass, median of `n`
    // (scripts/bench_web.mjs).
    async timeEmbedImages(bytes, batch, n = 3, warmup = 1) {
      const ms = [];
      for (let i = 0; i < warmup; i++) await runtime.engine.embedImages([bytes]);
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await runtime.engine.embedImages(Array.from({ length: batch }, () => bytes));
        ms.push((performance.now() - t0) / batch);
      }
      return ms.sort((a, b) => a - b)[Math.floor(n / 2)];
    },
    memoryBytes: () => runtime.engine.memoryBytes(),
  };
}
