// Re-rendering the views after a state change, and the two selections (feature, pair) that
// only some views depend on.

import { $, state, views, syncUrl } from "./state.js";

export function renderAll() {
  views.inputs.render();
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
