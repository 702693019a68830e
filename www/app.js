// monoscope main-thread UI. Never instantiates wasm: all model work happens in worker.js,
// reached through js/engine.js. This file owns the state and the order of work; js/views/*
// draw it. State changes go through the functions below, which re-render the affected views
// and keep the URL (history.replaceState) in step so that any view can be shared as a link.

import { EngineClient, WorkerCrashed } from "./js/engine.js";
import * as sources from "./js/sources.js";
import { readParams, buildSearch, PANELS, EMBED_DEFAULT_PANELS, BACKENDS } from "./js/params.js";
import { classLegend } from "./js/dom.js";
import { InputsView } from "./js/views/inputs.js";
import { renderFeatures } from "./js/views/features.js";
import { renderSimilarity } from "./js/views/similarity.js";
import { DictionaryView } from "./js/views/dictionary.js";
import { FeatureView } from "./js/views/feature.js";
import { HeatmapView } from "./js/views/heatmap.js";
import { mountApplications } from "./js/apps.js";

const SECOND_PROMPT = "a big red circle"; // the default page's second prompt (demo vocabulary)
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// State.

const params = readParams(location.search);

const state = {
  embed: params.embed,
  backend: params.backend,
  panels: params.panels && params.panels.length ? params.panels : params.embed ? EMBED_DEFAULT_PANELS : PANELS,
  explicitPanels: params.panels,
  modelParam: params.model || "demo", // what the URL says; "" for local files (not shareable)
  bundleParam: params.bundle, // "" = the model's default
  model: { status: "idle", label: "–", backend: null, info: null, hash: null, error: null },
  bundle: null, // {label, summary, manifest, features, examples, byId}
  images: [],
  prompts: [],
  feature: params.feature,
  pair: null, // {image: key, prompt: key}
  runs: 0,
  restarts: 0,
  error: null,
  firstResultMs: null,
  sceneSide: 64,
};

let engine = null;
let engineGen = 0; // bumps whenever model or bundle change: older results are stale
let nextKey = 1;

// ---------------------------------------------------------------------------------------------
// Status line and global errors.

function setStatus(text) {
  $("status").textContent = text;
}

function showGlobalError(message) {
  state.error = message;
  $("error").textContent = message;
  $("error").hidden = false;
  updateBodyState();
}

function clearGlobalError() {
  state.error = null;
  $("error").textContent = "";
  $("error").hidden = true;
}

function showNotes(lines) {
  $("notes").textContent = lines.join(" · ");
  $("notes").hidden = lines.length === 0;
}

function fieldError(id, message) {
  const node = $(id);
  node.textContent = message || "";
  node.hidden = !message;
}

function allInputs() {
  return [...state.images, ...state.prompts];
}

function updateBodyState() {
  let s;
  if (state.error && state.model.status !== "ready") s = "error";
  else if (state.model.status === "loading" || state.model.status === "idle") s = "loading";
  else if (state.model.status === "error") s = "error";
  else if (allInputs().some((x) => x.status === "pending" || x.status === "busy" || x.status === "reading")) s = "busy";
  else s = "ready";
  document.body.dataset.state = s;
  if (s === "ready") setStatus(state.images.length + state.prompts.length ? "ready" : "ready: add an image or a prompt");
  else if (s === "busy") setStatus("analysing…");
}

// ---------------------------------------------------------------------------------------------
// The URL.

function urlImages() {
  return state.images.filter((x) => x.url).map((x) => x.url);
}

function syncUrl() {
  const search = buildSearch({
    model: state.modelParam,
    bundle: state.bundleParam,
    prompts: state.prompts.map((p) => p.text),
    images: urlImages(),
    feature: state.feature,
    panels: state.explicitPanels,
    backend: state.backend,
    embed: state.embed,
  });
  if (search !== location.search) history.replaceState(null, "", `${location.pathname}${search}${location.hash}`);
}

// ---------------------------------------------------------------------------------------------
// Views.

const views = {};

function renderAll() {
  views.inputs.render();
  renderResults();
}

// Everything that depends on analysis results.
function renderResults() {
  renderFeatures($("features-view"), app);
  renderSimilarity($("similarity-view"), app);
  views.feature.render();
  views.heatmap.render();
}

function renderSourceStatus() {
  const m = state.model;
  $("model").textContent = m.label;
  $("backend").textContent = m.backend || (m.status === "loading" ? "starting…" : "–");
  $("bundle").textContent = state.bundle ? state.bundle.label : "none";
}

// ---------------------------------------------------------------------------------------------
// Analysis: one input at a time, in the order they were added.

let pumping = false;

async function pump() {
  if (pumping) return;
  pumping = true;
  let did = false;
  try {
    for (;;) {
      if (state.model.status !== "ready") break;
      const item = allInputs().find((x) => x.status === "pending");
      if (!item) break;
      did = true;
      const gen = engineGen;
      item.status = "busy";
      views.inputs.updateItem(item);
      updateBodyState();
      let result = null;
      let error = null;
      try {
        result =
          item.kind === "image" ? await engine.analyzeImage(item.bytes) : await engine.analyzeText(item.text);
      } catch (err) {
        error = err instanceof WorkerCrashed ? `${err.message} (the engine was restarted)` : err.message || String(err);
      }
      if (!allInputs().includes(item)) continue; // removed meanwhile
      if (gen !== engineGen) {
        if (item.status === "busy") item.status = "pending"; // model or bundle changed: redo
        continue;
      }
      if (error) {
        Object.assign(item, { status: "error", error, embedding: null, activations: null });
      } else {
        Object.assign(item, {
          status: "ok",
          error: null,
          embedding: result.embedding,
          activations: result.activations ?? null,
          truncated: Boolean(result.truncated),
        });
      }
      views.inputs.updateItem(item);
      renderResults();
    }
  } finally {
    pumping = false;
    if (did) {
      state.runs += 1;
      if (state.firstResultMs === null && allInputs().some((x) => x.status === "ok")) {
        state.firstResultMs = performance.now();
        performance.mark("monoscope:first-result");
      }
    }
    updateBodyState();
  }
  // Work that arrived while the last call was in flight.
  if (state.model.status === "ready" && allInputs().some((x) => x.status === "pending")) pump();
}

function markAllPending() {
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

// ---------------------------------------------------------------------------------------------
// Inputs.

function addPrompt(text) {
  const t = String(text).trim();
  if (!t) return false;
  const item = { kind: "prompt", key: `p${nextKey++}`, text: t, status: "pending", error: null };
  state.prompts.push(item);
  if (!state.pair && state.images.length) state.pair = { image: state.images[0].key, prompt: item.key };
  afterInputsChanged();
  return true;
}

function editPrompt(item, text) {
  const t = String(text).trim();
  if (!t) {
    removeInput(item);
    return;
  }
  if (t === item.text) return;
  Object.assign(item, { text: t, status: "pending", error: null, embedding: null, activations: null });
  afterInputsChanged();
}

function newImage(name, url) {
  return { kind: "image", key: `i${nextKey++}`, name, url, status: "reading", error: null, bytes: null, blob: null };
}

// Adds an image from a Blob or File. Reading errors stay on that image's card.
async function addImageBlob(item, blobPromise) {
  state.images.push(item);
  if (!state.pair && state.prompts.length) state.pair = { image: item.key, prompt: state.prompts[0].key };
  views.inputs.render();
  updateBodyState();
  try {
    const blob = await blobPromise;
    item.blob = blob;
    item.bytes = await blob.arrayBuffer();
    item.size = blob.size;
    item.status = "pending";
  } catch (err) {
    Object.assign(item, { status: "error", error: err.message || String(err), readError: true });
  }
  if (!state.images.includes(item)) return;
  afterInputsChanged();
}

function addImageFiles(files) {
  for (const file of Array.from(files || [])) addImageBlob(newImage(file.name, null), Promise.resolve(file));
}

function addImageUrl(value) {
  const name = String(value).split("/").pop() || String(value);
  const item = newImage(name, value);
  let url;
  try {
    url = sources.sameSiteUrl(value, "image URL");
  } catch (err) {
    item.url = null; // never put a rejected URL back into the link
    state.images.push(item);
    Object.assign(item, { status: "error", error: err.message, readError: true });
    afterInputsChanged();
    return;
  }
  addImageBlob(
    item,
    fetch(url, { credentials: "same-origin" }).then((res) => {
      if (!res.ok) throw new Error(`could not load ${url.pathname}: HTTP ${res.status}`);
      return res.blob();
    }),
  );
}

function removeInput(item) {
  state.images = state.images.filter((x) => x !== item);
  state.prompts = state.prompts.filter((x) => x !== item);
  if (state.pair && (state.pair.image === item.key || state.pair.prompt === item.key)) state.pair = null;
  if (item.thumb) URL.revokeObjectURL(item.thumb);
  views.heatmap.forget(item.key);
  afterInputsChanged();
}

function afterInputsChanged() {
  if (!state.pair && state.images.length && state.prompts.length) {
    state.pair = { image: state.images[0].key, prompt: state.prompts[0].key };
  }
  views.inputs.render();
  renderResults();
  updateBodyState();
  syncUrl();
  pump();
}

// ---------------------------------------------------------------------------------------------
// Features, pairs.

function selectFeature(id, { focus = true } = {}) {
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

function selectPair(imageKey, promptKey) {
  state.pair = { image: imageKey, prompt: promptKey };
  renderSimilarity($("similarity-view"), app);
}

// ---------------------------------------------------------------------------------------------
// Model and bundle.

function parseJsonBlob(blob, what) {
  return blob.text().then((t) => {
    try {
      return JSON.parse(t);
    } catch (err) {
      throw new Error(`${what} is not valid JSON: ${err.message}`);
    }
  });
}

// Reads a bundle's manifest and features.json for the views (the engine validates the files).
async function readBundleMeta(blobs, label, summaryJson) {
  const [manifest, featuresDoc] = await Promise.all([
    parseJsonBlob(blobs.manifest, "manifest.json"),
    parseJsonBlob(blobs.features, "features.json"),
  ]);
  const features = Array.isArray(featuresDoc?.features) ? featuresDoc.features : [];
  const byId = new Map(features.map((f) => [f.id, f]));
  let summary = {};
  try {
    summary = JSON.parse(summaryJson);
  } catch {
    // the summary is informative
  }
  return { label, summary, manifest, features, examples: featuresDoc?.examples || {}, byId };
}

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
  const problem = bundle ? bundleProblem(bundle.summary) : null;
  fieldError("bundle-warning", problem);
  if (state.feature !== null && (!bundle || !bundle.byId.has(state.feature))) {
    // A feature from the link that this bundle lacks: say so and forget it.
    if (bundle) showNotes([`feature ${state.feature} is not in this bundle (it has ${bundle.features.length})`]);
    state.feature = null;
  }
  views.dictionary.render();
  renderSourceStatus();
}

// Loads a model ({label, param, files: Promise<blobs>}) and optionally a bundle
// ({label, param, files: Promise<blobs>} or null). Until the new model works, the page keeps
// the one it has (results included); a failure is shown next to the control that asked
// (errorId), or as the page's error when there is no working model.
let loadGen = 0;

async function loadModel(model, bundle, errorId) {
  const gen = ++loadGen;
  fieldError(errorId, null);
  fieldError("bundle-error", null);
  if (state.model.status !== "ready") {
    state.model = { status: "loading", label: model.label, backend: null, info: null, hash: null, error: null };
    renderSourceStatus();
    updateBodyState();
  }
  setStatus(`loading ${model.label}…`);
  try {
    const [modelBlobs, bundleBlobs] = await Promise.all([
      model.files,
      bundle
        ? bundle.files.catch((err) => {
            fieldError("bundle-error", `bundle "${bundle.label}": ${err.message}`);
            return null;
          })
        : null,
    ]);
    if (gen !== loadGen) return;
    setStatus(`starting ${model.label}…`);
    // Parse the bundle's JSON for the views while the engine loads the same files.
    const meta = bundleBlobs ? readBundleMeta(bundleBlobs, bundle.label, "{}").catch((err) => err) : null;
    const ready = await engine.load(modelBlobs, bundleBlobs);
    if (gen !== loadGen) return;
    engineGen += 1;
    clearGlobalError();
    const { info, label } = describeModel(ready, model.label);
    state.model = { status: "ready", label, backend: ready.backend, info, hash: ready.hash, error: null };
    state.modelParam = model.param;
    let loaded = null;
    if (ready.bundle) {
      const m = await meta;
      if (m instanceof Error) fieldError("bundle-error", `bundle "${bundle.label}": ${m.message}`);
      else loaded = Object.assign(m, { summary: JSON.parse(ready.bundle) });
    } else if (ready.bundleError) {
      fieldError("bundle-error", `bundle "${bundle.label}": ${ready.bundleError}`);
    }
    // Only the demo model has a bundle by default, so only there does "no bundle" need saying.
    state.bundleParam = loaded ? bundle.param : model.param === "demo" ? "none" : "";
    setBundle(loaded);
    views.heatmap.clear();
    renderSourceStatus();
    if (state.feature !== null && state.bundle) selectFeature(state.feature, { focus: false });
    markAllPending();
    renderResults();
    syncUrl();
    pump();
  } catch (err) {
    if (gen !== loadGen) return;
    const message = err.message || String(err);
    if (state.model.status === "ready") {
      fieldError(errorId, `${model.label}: ${message} (still using ${state.model.label})`);
      updateBodyState();
    } else {
      state.model = { ...state.model, status: "error", error: message, backend: null };
      showGlobalError(`model "${model.label}": ${message}`);
      renderSourceStatus();
      setStatus("error");
    }
  }
}

// Another bundle for the loaded model. On failure the old one stays and the error shows next
// to the bundle input.
async function loadBundleOnly(bundle) {
  fieldError("bundle-error", null);
  if (state.model.status !== "ready") {
    fieldError("bundle-error", "load a model first");
    return;
  }
  try {
    if (!bundle) {
      await engine.clearBundle();
      engineGen += 1;
      state.bundleParam = "none";
      setBundle(null);
    } else {
      setStatus("loading bundle…");
      const blobs = await bundle.files;
      const [summary, meta] = await Promise.all([engine.loadBundle(blobs), readBundleMeta(blobs, bundle.label, "{}")]);
      meta.summary = JSON.parse(summary);
      engineGen += 1;
      state.bundleParam = bundle.param;
      setBundle(meta);
    }
  } catch (err) {
    fieldError("bundle-error", err.message || String(err));
    updateBodyState();
    return;
  }
  views.heatmap.clear();
  markAllPending();
  renderResults();
  syncUrl();
  pump();
}

function modelFromSpec(spec) {
  if (spec.kind === "hub") return hubModel(spec.repo);
  return {
    label: spec.id,
    param: spec.id,
    files: sources.fetchModelFiles(spec.base),
  };
}

function bundleFromSpec(spec) {
  if (!spec) return null;
  return { label: spec.id, param: spec.id === "demo" && state.modelParam === "demo" ? "" : spec.id, files: sources.fetchBundleFiles(spec.base) };
}

function hubModel(repo) {
  const progress = $("hub-progress");
  const status = $("hub-status");
  fieldError("hub-error", null);
  progress.hidden = false;
  progress.removeAttribute("value"); // indeterminate until the sizes are known
  status.textContent = `${repo}: contacting the hub…`;
  const files = sources
    .hubModelFiles(repo, ({ file, loaded, total, cached }) => {
      if (total > 0) {
        progress.max = total;
        progress.value = loaded;
      }
      const pct = total > 0 ? ` (${((100 * loaded) / total).toFixed(0)}%)` : "";
      status.textContent = `${repo}: ${cached ? `${file} from the browser cache` : `downloading ${file}`} · ${fmtMB(loaded)}${total ? ` of ${fmtMB(total)}` : ""}${pct}`;
    })
    .then(
      (blobs) => {
        progress.hidden = true;
        status.textContent = `${repo}: files ready (kept in this browser's cache)`;
        return blobs;
      },
      (err) => {
        progress.hidden = true;
        fieldError("hub-error", err.message);
        status.textContent = "";
        throw err;
      },
    );
  return { label: `hf:${repo}`, param: `hf:${repo}`, files };
}

function fmtMB(n) {
  return `${(n / 1e6).toFixed(1)} MB`;
}

// ---------------------------------------------------------------------------------------------
// Crash recovery.

function onEngineCrash(err) {
  state.restarts += 1;
  $("backend").textContent = "restarting…";
  showNotes([`${err.message}. The engine was restarted with the same model and bundle.`]);
  console.warn(`monoscope: ${err.message}; restarting the engine worker`);
  // Restart right away (same model and bundle) so the next request does not wait for it.
  engine.ensureReady().then(
    (ready) => {
      state.model.backend = ready.backend;
      renderSourceStatus();
    },
    (e) => showGlobalError(e.message),
  );
}

// ---------------------------------------------------------------------------------------------
// Controls.

function wireControls() {
  const input = $("image-input");
  input.addEventListener("change", () => {
    const files = Array.from(input.files || []);
    input.value = ""; // choosing the same file again still fires "change"
    addImageFiles(files);
  });
  const zone = $("dropzone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (ev) => {
      ev.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    addImageFiles(ev.dataTransfer && ev.dataTransfer.files);
  });

  $("prompt-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const box = $("new-prompt");
    if (addPrompt(box.value)) {
      box.value = "";
      fieldError("prompt-form-error", null);
    } else {
      fieldError("prompt-form-error", "type a prompt first");
    }
  });

  $("rerun").addEventListener("click", () => {
    markAllPending();
    pump();
  });

  $("builtin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = $("builtin-model").value;
    const spec = sources.parseModelSpec(id);
    loadModel(modelFromSpec(spec), bundleFromSpec(sources.parseBundleSpec("", spec)), "builtin-error");
  });

  $("hub-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const repo = $("hub-repo").value.trim();
    if (!sources.validRepo(repo)) {
      fieldError("hub-error", `"${repo}" is not a repo id: use owner/name, e.g. ${sources.DEFAULT_HUB_REPO}`);
      return;
    }
    loadModel(hubModel(repo), null, "hub-error");
  });

  $("hub-forget").addEventListener("click", async () => {
    const gone = await sources.forgetHubDownloads();
    $("hub-status").textContent = gone ? "Downloaded models removed from this browser." : "Nothing was stored.";
  });

  $("model-files").addEventListener("change", (ev) => {
    fieldError("model-error", null);
    let files;
    try {
      files = sources.classifyModelFiles(ev.target.files);
    } catch (err) {
      fieldError("model-error", err.message);
      return;
    }
    const name = files.weights.name;
    loadModel({ label: `local files (${name})`, param: "", files: Promise.resolve(files) }, null, "model-error");
  });

  $("bundle-files").addEventListener("change", (ev) => {
    fieldError("bundle-error", null);
    let files;
    try {
      files = sources.classifyBundleFiles(ev.target.files);
    } catch (err) {
      fieldError("bundle-error", err.message);
      return;
    }
    loadBundleOnly({ label: `local files (${files.features.name})`, param: "", files: Promise.resolve(files) });
  });

  $("bundle-none").addEventListener("click", () => loadBundleOnly(null));

  // Charts read colours from CSS; redraw them when the theme flips.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    views.dictionary.render();
  });
}

function applyPanels() {
  document.body.classList.toggle("embed", state.embed);
  for (const section of document.querySelectorAll("section[data-panel]")) {
    const name = section.dataset.panel;
    const shown = name === "source" ? !state.embed : state.panels.includes(name);
    section.hidden = !shown;
  }
  for (const a of document.querySelectorAll(".views-nav a")) {
    const target = document.querySelector(a.getAttribute("href"));
    a.hidden = !target || target.hidden;
  }
}

// In embed mode, tell a same-site parent (the <monoscope-widget>) how tall the page is, so the
// iframe can fit it. targetOrigin = our origin: other sites never receive anything.
function reportHeight() {
  if (!state.embed || window.parent === window) return;
  const send = () =>
    window.parent.postMessage({ type: "monoscope:height", height: document.documentElement.scrollHeight }, location.origin);
  new ResizeObserver(send).observe(document.body);
  send();
}

// ---------------------------------------------------------------------------------------------
// Test and console hook: window.__monoscope (read-only views of the state).

function inputSnapshot(x) {
  let top = [];
  if (x.activations) {
    top = Array.from(x.activations, (v, i) => [i, v])
      .filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 16);
  }
  return {
    key: x.key,
    name: x.name ?? null,
    text: x.text ?? null,
    status: x.status,
    error: x.error ?? null,
    embedding: x.embedding ? Array.from(x.embedding) : null,
    truncated: x.truncated ?? null,
    top,
  };
}

const app = {
  state,
  get engine() {
    return engine;
  },
  selectFeature,
  selectPair,
  addPrompt,
  editPrompt,
  removeInput,
  addImageFiles,
  heatmap: (bytes, onProgress) => engine.heatmap(bytes, onProgress),
  renderScene: (name) => engine.renderScene(name, state.sceneSide),
};

// Results of the applications' panels (probe, attack, control), for tests and the console.
const appsResult = {};
let appsApi = null;

window.__monoscope = {
  get state() {
    return document.body.dataset.state;
  },
  get backend() {
    return state.model.backend;
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
  get feature() {
    return state.feature;
  },
  get firstResultMs() {
    return state.firstResultMs;
  },
  get apps() {
    return appsResult;
  },
  get images() {
    return state.images.map(inputSnapshot);
  },
  get prompts() {
    return state.prompts.map(inputSnapshot);
  },
};

// ---------------------------------------------------------------------------------------------
// Start.

async function defaultInputs() {
  // The demo images' list names each image's caption; the first one and its caption are the
  // default inputs.
  try {
    const res = await fetch(sources.DEMO_PATHS.images + "index.json");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const list = await res.json();
    const first = list[0];
    return { images: [sources.DEMO_PATHS.images + first.file], prompts: [first.caption, SECOND_PROMPT] };
  } catch (err) {
    showNotes([`demo images unavailable (${err.message})`]);
    return { images: [], prompts: [SECOND_PROMPT] };
  }
}

async function main() {
  views.inputs = new InputsView(app);
  views.dictionary = new DictionaryView(app);
  views.feature = new FeatureView(app);
  views.heatmap = new HeatmapView(app);
  $("features-legend").append(classLegend());
  wireControls();
  applyPanels();
  reportHeight();
  renderAll();
  if (params.problems.length) showNotes(params.problems);

  if (!BACKENDS.includes(state.backend)) {
    showGlobalError(`unknown backend "${state.backend}": use ?backend=auto, webgpu or cpu`);
    setStatus("error");
    return;
  }
  let modelSpec;
  let bundleSpec;
  try {
    modelSpec = sources.parseModelSpec(params.model);
    bundleSpec = sources.parseBundleSpec(params.bundle, modelSpec);
  } catch (err) {
    showGlobalError(err.message);
    setStatus("error");
    return;
  }
  engine = new EngineClient({
    workerUrl: new URL("./worker.js", import.meta.url),
    backend: state.backend,
    onCrash: onEngineCrash,
  });
  engine.start(); // compile the wasm while the model downloads
  window.__monoscopeDebug = { crashWorker: () => engine.crashForTest(), apps: () => appsApi };
  appsApi = mountApplications(
    { probe: $("probe-view"), attack: $("attack-view"), control: $("control-view") },
    {
      call: async (cmd, args, opts) => {
        await engine.ensureReady();
        return engine.call(cmd, args, opts);
      },
      engineReady: () => engine.ready,
      backend: () => state.model.backend || "engine",
      isDemo: () => state.modelParam === "demo",
      assetBase: new URL("assets/", document.baseURI),
      featureClass: (id) => state.bundle?.byId.get(id)?.class ?? "Rare",
      openFeature: (id) => selectFeature(id),
      result: appsResult,
    },
  );

  state.modelParam = modelSpec.id;
  const model = modelFromSpec(modelSpec);
  const bundle = bundleSpec ? { ...bundleFromSpec(bundleSpec), param: params.bundle } : null;
  const loading = loadModel(model, bundle, "model-error");

  const inputs = params.prompts !== null ? { images: params.images, prompts: params.prompts } : await defaultInputs();
  for (const url of inputs.images) addImageUrl(url);
  for (const p of inputs.prompts) addPrompt(p);
  await loading;
  if (state.bundle && state.panels.includes("control")) appsApi.control?.update();
}

main();
