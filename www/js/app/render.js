// Re-rendering the views after a state change, and the two selections (feature, pair) that
// only some views depend on.

import { $, state, views, syncUrl } from "./state.js";

export function renderAll() {
  views.inputs.render();
  renderResults();
}

// While the analysis queue runs, many changes arrive in a burst (50 dropped images finish
// reading at once, then finish analysing one by one): re-rendering every view for each would
// flood the main thread. renderSoon() renders at once when the last render is older than
// RENDER_MS, else once when that time is up; flushRender() (the queue calls it when it goes
// idle) renders whatever is still due, so an idle page always shows its latest state.
const RENDER_MS = 150;
let lastRender = 0;
let timer = null;
let due = null; // null, or {inputs: whether the inputs panel must be rendered too}

export function renderSoon({ inputs = false } = {}) {
  due = { inputs: inputs || Boolean(due?.inputs) };
  if (timer) return;
  const wait = lastRender + RENDER_MS - performance.now();
  if (wait <= 0) flushRender();
  else timer = setTimeout(flushRender, wait);
}

export function flushRender() {
  clearTimeout(timer);
  timer = null;
  if (!due) return;
  const { inputs } = due;
  due = null;
  lastRender = performance.now();
  if (inputs) views.inputs.render();
  renderResults();
}

// Everything that depends on analysis results.
export function renderResults() {
  views.features.render();
  views.similarity.render();
  views.feature.render();
  views.heatmap.render();
}

// Opens a feature's page; `focus` moves the keyboard there (not when a link or load selects it).
export function selectFeature(id, { focus = true } = {}) {
  if (!state.bundle || !state.bundle.byId.has(id)) return;
  state.feature = id;
  views.feature.render();
  views.heatmap.render();
  views.dictionary.highlight();
  syncUrl();
  if (focus && state.panels.includes("feature")) {
    const title = $("feature-title");
    title.scrollIntoView({ block: "start", behavior: "smooth" });
    title.focus({ preventScroll: true });
  }
}

export function selectPair(imageKey, promptKey) {
  state.pair = { image: imageKey, prompt: promptKey };
  views.similarity.render();
}
