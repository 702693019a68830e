// The analysis queue: pending inputs in the order they were added, sent to the engine worker
// (which runs one command at a time) in batches of up to MAX_BATCH inputs of one kind, each
// batch one forward pass (issue 12: 16-25% less time per image for a ViT-B/32 on the CPU
// backend at 8 than at 1). The first batch of a run is one input, so the first result shows
// as soon as one forward pass allows. An input that fails (an unreadable file, a blank
// prompt) fails alone; if the engine crashes during a batch, its inputs are redone one at a
// time, so only the one that crashes it is marked. The status line counts them ("analysing
// 3 of 50…"). Results that were computed for an older model or bundle (runtime.engineGen
// moved on) are redone, and inputs removed meanwhile are dropped.

import { state, runtime, views, allInputs } from "./state.js";
import { updateBodyState } from "./status.js";
import { renderSoon, flushRender } from "./render.js";
import { WorkerCrashed } from "../engine.js";

let pumping = false;

// Inputs per batch: 8 images of a ViT-B/32 are one forward pass of 400 token rows, past which
// the per-image time stops falling (scripts/bench_web.mjs); the engine cuts a batch further
// where a large model's activations would not fit (lab::BATCH_ACTIVATION_BYTES).
export const MAX_BATCH = 8;

// The next inputs to analyse together: the first pending one and, up to `limit`, the pending
// inputs of the same kind after it. An input whose batch crashed the engine goes alone.
function nextBatch(limit) {
  if (state.model.status !== "ready") return [];
  const pending = allInputs().filter((x) => x.status === "pending");
  if (!pending.length) return [];
  const first = pending[0];
  if (first.solo || limit <= 1) return [first];
  return pending.filter((x) => x.kind === first.kind && !x.solo).slice(0, limit);
}

// Runs the engine on a batch; never throws (errors are the inputs', not the page's). Resolves
// to one {result, error} per input, or to {crashed} when the worker died during the call.
async function analyse(batch) {
  const engine = runtime.engine;
  try {
    const results =
      batch[0].kind === "image"
        ? await engine.analyzeImages(batch.map((x) => x.bytes))
        : await engine.analyzeTexts(batch.map((x) => x.text));
    return batch.map((_, i) => {
      const r = results[i];
      if (!r) return { result: null, error: "the engine returned no result for this input" };
      return r.error ? { result: null, error: r.error } : { result: r, error: null };
    });
  } catch (err) {
    const error = err instanceof WorkerCrashed ? `${err.message} (the engine was restarted)` : err.message || String(err);
    return { crashed: err instanceof WorkerCrashed, error };
  }
}

function store(item, { result, error }) {
  if (error) {
    Object.assign(item, { status: "error", error, embedding: null, activations: null });
    return;
  }
  Object.assign(item, {
    status: "ok",
    error: null,
    embedding: result.embedding,
    activations: result.activations ?? null,
    truncated: Boolean(result.truncated),
  });
}

async function runBatch(batch) {
  const gen = runtime.engineGen;
  for (const item of batch) {
    item.status = "busy";
    views.inputs.updateItem(item);
  }
  updateBodyState();
  state.batchSizes.push(batch.length);
  const outcome = await analyse(batch);
  const redo = gen !== runtime.engineGen; // model or bundle changed meanwhile
  const alive = allInputs();
  batch.forEach((item, i) => {
    if (!alive.includes(item)) return; // removed meanwhile
    if (redo) {
      if (item.status === "busy") item.status = "pending";
      return;
    }
    if (!Array.isArray(outcome)) {
      if (outcome.crashed && batch.length > 1) {
        // Which input crashed the engine is not known: each is redone on its own.
        Object.assign(item, { status: "pending", solo: true });
      } else {
        store(item, { result: null, error: outcome.error });
      }
    } else {
      store(item, outcome[i]);
    }
    views.inputs.updateItem(item);
  });
  renderSoon(); // throttled while the queue runs; flushed when it goes idle
}

// Counts a finished batch and marks the first result (the budgets script reads it).
function countRun() {
  state.runs += 1;
  if (state.firstResultMs === null && allInputs().some((x) => x.status === "ok")) {
    state.firstResultMs = performance.now();
    performance.mark("monoscope:first-result");
  }
}

export async function pump() {
  if (pumping) return;
  pumping = true;
  let did = false;
  try {
    // MAX_BATCH per engine: with helper engines (?engines=N) a batch is shared between them.
    for (let batch = nextBatch(1); batch.length; batch = nextBatch(MAX_BATCH * runtime.engine.parallelism)) {
      did = true;
      await runBatch(batch);
    }
  } finally {
    pumping = false;
    flushRender(); // the latest results and inputs, before the page reads as idle
    if (did) countRun();
    updateBodyState();
  }
  // Work that arrived while the last call was in flight.
  if (state.model.status === "ready" && allInputs().some((x) => x.status === "pending")) pump();
}

// After a model or bundle change (or "Re-run"): every analysed input is analysed again.
export function markAllPending() {
  for (const x of allInputs()) {
    if (x.status === "ok" || x.status === "error" || x.status === "busy") {
      if (x.kind === "image" && x.readError) continue; // unreadable files stay failed
      x.status = "pending";
      x.error = null;
      x.solo = false;
    }
  }
  views.inputs.render();
  updateBodyState();
}
