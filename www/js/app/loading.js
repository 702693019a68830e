// Loading models and bundles into the engine, and restarting it after a crash. Until a new
// model works the page keeps the one it has (results included); a failure is shown next to
// the control that asked, or as the page's error when there is no working model.

import { state, runtime, views, syncUrl } from "./state.js";
import {
  setStatus,
  showGlobalError,
  clearGlobalError,
  showNotes,
  fieldError,
  updateBodyState,
  renderSourceStatus,
  showLoadProgress,
  hideLoadProgress,
} from "./status.js";
import { renderResults, selectFeature } from "./render.js";
import { pump, markAllPending } from "./queue.js";
import { EngineClient } from "../engine.js";
import { oneLine } from "../dom.js";

let loadGen = 0; // a newer loadModel call makes older ones drop their results

async function parseJsonBlob(blob, what) {
  const text = await blob.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${err.message}`);
  }
}

// Reads a bundle's manifest and features.json for the views (the engine validates the files).
async function readBundleMeta(blobs, label) {
  const [manifest, featuresDoc] = await Promise.all([
    parseJsonBlob(blobs.manifest, "manifest.json"),
    parseJsonBlob(blobs.features, "features.json"),
  ]);
  const features = Array.isArray(featuresDoc?.features) ? featuresDoc.features : [];
  const byId = new Map(features.map((f) => [f.id, f]));
  return { label, summary: {}, manifest, features, examples: featuresDoc?.examples || {}, byId };
}

// The header's label ("demo (dim 64, 0.52M parameters)"); also the size of demo scenes.
function describeModel(ready, label) {
  try {
    const info = JSON.parse(ready.info);
    const parts = [];
    if (info?.config?.projection_dim) parts.push(`dim ${info.config.projection_dim}`);
    if (Number.isFinite(info?.parameters)) parts.push(`${(info.parameters / 1e6).toFixed(2)}M parameters`);
    state.sceneSide = info?.config?.vision?.image_size || 64;
    return { info, label: parts.length ? `${label} (${parts.join(", ")})` : label };
  } catch {
    return { info: null, label };
  }
}

function bundleProblem(summary) {
  if (summary && summary.model_matches === false) {
    return `This bundle was made for another model (its model hash ${summary.model_hash}, the loaded model's ${state.model.hash}): feature meanings may not apply.`;
  }
  return null;
}

function setBundle(bundle) {
  state.bundle = bundle;
  fieldError("bundle-warning", bundle ? bundleProblem(bundle.summary) : null);
  if (state.feature !== null && (!bundle || !bundle.byId.has(state.feature))) {
    // A feature from the link that this bundle lacks: say so and forget it.
    if (bundle) showNotes([`feature ${state.feature} is not in this bundle (it has ${bundle.features.length})`]);
    state.feature = null;
  }
  views.dictionary.render();
  renderSourceStatus();
}

// Every input is analysed again with the new model or bundle.
function reanalyse() {
  markAllPending();
  renderResults();
  syncUrl();
  pump();
}

function beginLoad(model, errorId) {
  fieldError(errorId, null);
  fieldError("bundle-error", null);
  if (state.model.status !== "ready") {
    clearGlobalError(); // the last model's error: this one is loading now
    state.model = { status: "loading", label: model.label, backend: null, info: null, hash: null, error: null };
    renderSourceStatus();
    updateBodyState();
  }
  setStatus(`loading ${model.label}…`);
}

// The model's files and the bundle's; a bundle that cannot be fetched is reported and skipped.
function fetchSources(model, bundle) {
  const bundleFiles = bundle
    ? bundle.files.catch((err) => {
        fieldError("bundle-error", `bundle "${bundle.label}": ${err.message}`);
        return null;
      })
    : null;
  return Promise.all([model.files, bundleFiles]);
}

// The bundle the engine accepted, with the views' metadata (meta: a promise of it or an Error).
async function acceptedBundle(ready, bundle, meta) {
  if (ready.bundle) {
    const m = await meta;
    if (!(m instanceof Error)) return Object.assign(m, { summary: JSON.parse(ready.bundle) });
    fieldError("bundle-error", `bundle "${bundle.label}": ${m.message}`);
  } else if (ready.bundleError) {
    fieldError("bundle-error", `bundle "${bundle.label}": ${ready.bundleError}`);
  }
  return null;
}

async function adoptModel(model, bundle, ready, meta) {
  runtime.engineGen += 1;
  clearGlobalError();
  const { info, label } = describeModel(ready, model.label);
  state.model = { status: "ready", label, backend: ready.backend, wasm: ready.wasm, info, hash: ready.hash, error: null };
  state.modelParam = model.param;
  const loaded = await acceptedBundle(ready, bundle, meta);
  // Only the demo model has a bundle by default, so only there does "no bundle" need saying.
  state.bundleParam = loaded ? bundle.param : model.param === "demo" ? "none" : "";
  setBundle(loaded);
  views.heatmap.clear();
  renderSourceStatus();
  if (state.feature !== null && state.bundle) selectFeature(state.feature, { focus: false });
  reanalyse();
}

function loadFailed(model, errorId, err) {
  const message = oneLine(err.message || String(err));
  if (state.model.status === "ready") {
    fieldError(errorId, `${model.label}: ${message} (still using ${state.model.label})`);
    updateBodyState();
    return;
  }
  state.model = { ...state.model, status: "error", error: message, backend: null };
  showGlobalError(`model "${model.label}": ${message}`);
  renderSourceStatus();
  setStatus("error");
}

// Loads a model ({label, param, files: Promise<blobs>}) and optionally a bundle (the same
// shape, or null). errorId: the error slot of the control that asked.
export async function loadModel(model, bundle, errorId) {
  const gen = ++loadGen;
  const t0 = performance.now();
  state.loadProgress = {};
  beginLoad(model, errorId);
  try {
    const [modelBlobs, bundleBlobs] = await fetchSources(model, bundle);
    if (gen !== loadGen) return;
    setStatus(`starting ${model.label}…`);
    // Parse the bundle's JSON for the views while the engine loads the same files.
    const meta = bundleBlobs ? readBundleMeta(bundleBlobs, bundle.label).catch((err) => err) : null;
    const placed = (done, total) => gen === loadGen && showLoadProgress("tensors", done, total);
    const ready = await runtime.engine.load(modelBlobs, bundleBlobs, placed);
    if (gen !== loadGen) return;
    hideLoadProgress();
    state.loadProgress.ms = performance.now() - t0; // files fetched or read, tensors placed
    await adoptModel(model, bundle, ready, meta);
  } catch (err) {
    if (gen !== loadGen) return;
    hideLoadProgress();
    loadFailed(model, errorId, err);
  }
}

async function swapBundle(bundle) {
  if (!bundle) {
    await runtime.engine.clearBundle();
    runtime.engineGen += 1;
    state.bundleParam = "none";
    setBundle(null);
    return;
  }
  setStatus("loading bundle…");
  const blobs = await bundle.files;
  const [summary, meta] = await Promise.all([runtime.engine.loadBundle(blobs), readBundleMeta(blobs, bundle.label)]);
  meta.summary = JSON.parse(summary);
  meta.thumbs = bundle.thumbs || null; // Map(pair id -> image URL) for bundles built here
  runtime.engineGen += 1;
  state.bundleParam = bundle.param;
  setBundle(meta);
}

// Another bundle (or none) for the loaded model. On failure the old one stays and the error
// shows next to the bundle input.
export async function loadBundleOnly(bundle) {
  fieldError("bundle-error", null);
  if (state.model.status !== "ready") {
    fieldError("bundle-error", "load a model first");
    return;
  }
  try {
    await swapBundle(bundle);
  } catch (err) {
    fieldError("bundle-error", err.message || String(err));
    updateBodyState();
    return;
  }
  views.heatmap.clear();
  reanalyse();
}

function onEngineCrash(err) {
  state.restarts += 1;
  document.getElementById("backend").textContent = "restarting…";
  showNotes([`${err.message}. The engine was restarted with the same model and bundle.`]);
  console.warn(`monoscope: ${err.message}; restarting the engine worker`);
  // Restart right away (same model and bundle) so the next request does not wait for it.
  runtime.engine.ensureReady().then(
    (ready) => {
      state.model.backend = ready.backend;
      state.model.wasm = ready.wasm;
      renderSourceStatus();
    },
    (e) => showGlobalError(e.message),
  );
}

// Creates the engine worker and starts compiling the wasm while the model downloads.
export function startEngine(workerUrl) {
  runtime.engine = new EngineClient({ workerUrl, backend: state.backend, onCrash: onEngineCrash, helpers: state.engines - 1 });
  runtime.engine.start();
  return runtime.engine;
}
