// The page's state: one object that every other module of js/app/ reads and changes, plus
// the registry of views and the engine handle. Nothing here touches the DOM except the URL,
// which is the state's shareable form and so is kept in step by syncUrl().

import { readParams, buildSearch, DEFAULT_PANELS, EMBED_DEFAULT_PANELS } from "../params.js";

export const $ = (id) => document.getElementById(id);

export const params = readParams(location.search);

function initialPanels() {
  const base = params.panels && params.panels.length ? params.panels : params.embed ? EMBED_DEFAULT_PANELS : DEFAULT_PANELS;
  return params.build && !base.includes("build") ? [...base, "build"] : base;
}

export const state = {
  embed: params.embed,
  backend: params.backend,
  engines: params.engines, // engine workers sharing each batch (CPU backend)
  wasm: params.wasm, // the wasm build the workers load: auto | relaxed | simd128
  panels: initialPanels(),
  explicitPanels: params.panels,
  modelParam: params.model || "demo", // what the URL says; "" for local files (not shareable)
  bundleParam: params.bundle, // "" = the model's default
  model: { status: "idle", label: "–", backend: null, wasm: null, info: null, hash: null, error: null },
  bundle: null, // {label, summary, manifest, features, examples, byId}
  images: [],
  prompts: [],
  feature: params.feature,
  pair: null, // {image: key, prompt: key}
  runs: 0,
  batchSizes: [], // inputs per engine call of the queue, in order (tests read it)
  restarts: 0,
  error: null,
  firstResultMs: null,
  loadProgress: {}, // {bytes: {done, total}, tensors: {done, total}} of the last model load
  sceneSide: 64,
};

// Mutable handles shared by the modules (an ES module's `let` cannot be assigned by importers).
export const runtime = {
  engine: null,
  engineGen: 0, // bumps whenever model or bundle change: older results are stale
};

// The views, filled in by app.js: inputs, features, similarity, dictionary, feature, heatmap.
export const views = {};

let nextKey = 1;

// A fresh key for an input ("p1", "i2", ...): views keep their cards by it.
export function newKey(prefix) {
  return `${prefix}${nextKey++}`;
}

export function allInputs() {
  return [...state.images, ...state.prompts];
}

function urlImages() {
  return state.images.filter((x) => x.url).map((x) => x.url);
}

export function syncUrl() {
  const search = buildSearch({
    model: state.modelParam,
    bundle: state.bundleParam,
    prompts: state.prompts.map((p) => p.text),
    images: urlImages(),
    feature: state.feature,
    panels: state.explicitPanels,
    backend: state.backend,
    engines: state.engines,
    wasm: state.wasm,
    embed: state.embed,
    build: !state.explicitPanels && state.panels.includes("build"),
  });
  if (search !== location.search) history.replaceState(null, "", `${location.pathname}${search}${location.hash}`);
}
