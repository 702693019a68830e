// The analysis queue: one input at a time (the engine worker runs one command at a time), in
// the order they were added; the status line counts them ("analysing 3 of 50…"). Results
// that were computed for an older model or bundle (runtime.engineGen moved on) are redone,
// and inputs removed meanwhile are dropped.

import { state, runtime, views, allInputs } from "./state.js";
import { updateBodyState } from "./status.js";
import { renderSoon, flushRender } from "./render.js";
import { WorkerCrashed } from "../engine.js";

let pumping = false;

function nextPending() {
  if (state.model.status !== "ready") return null;
  return allInputs().find((x) => x.status === "pending") ?? null;
}

// Runs the engine on one input; never throws (the error is the input's, not the page's).
async function analyse(item) {
  const engine = runtime.engine;
  try {
    const result = item.kind === "image" ? await engine.analyzeImage(item.bytes) : await engine.analyzeText(item.text);
    return { result, error: null };
  } catch (err) {
    const error = err instanceof WorkerCrashed ? `${err.message} (the engine was restarted)` : err.message || String(err);
    return { result: null, error };
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

async function runOne(item) {
  const gen = runtime.engineGen;
  item.status = "busy";
  views.inputs.updateItem(item);
  updateBodyState();
  const outcome = await analyse(item);
  if (!allInputs().includes(item)) return; // removed meanwhile
  if (gen !== runtime.engineGen) {
    if (item.status === "busy") item.status = "pending"; // model or bundle changed: redo
    return;
  }
  store(item, outcome);
  views.inputs.updateItem(item);
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
    for (let item = nextPending(); item; item = nextPending()) {
      did = true;
      await runOne(item);
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
    }
  }
  views.inputs.render();
  updateBodyState();
}
