// monoscope main-thread UI, the page's entry module. Never instantiates wasm: all model work
// happens in worker.js, reached through js/engine.js. The state and the order of work live in
// js/app/ (state, status, render, queue, inputs, models, loading, controls, testhooks);
// js/views/* draw the state and js/apps/* are the applications' panels. State changes go
// through js/app/, which re-renders the affected views and keeps the URL
// (history.replaceState) in step so that any view can be shared as a link.

import * as sources from "./js/sources.js";
import { BACKENDS } from "./js/params.js";
import { classLegend } from "./js/dom.js";
import { InputsView } from "./js/views/inputs.js";
import { renderFeatures } from "./js/views/features.js";
import { renderSimilarity } from "./js/views/similarity.js";
import { DictionaryView } from "./js/views/dictionary.js";
import { CompareView } from "./js/views/compare.js";
import { FeatureView } from "./js/views/feature.js";
import { HeatmapView } from "./js/views/heatmap.js";
import { mountApplications } from "./js/apps/index.js";
import { mountBuild } from "./js/build/panel.js";
import { mountLibrary } from "./js/build/library.js";
import { $, params, state, runtime, views, syncUrl } from "./js/app/state.js";
import { setStatus, showGlobalError, showNotes } from "./js/app/status.js";
import { renderAll, selectFeature, selectPair } from "./js/app/render.js";
import { addPrompt, editPrompt, removeInput, addImageFiles, addImageUrl } from "./js/app/inputs.js";
import { modelFromSpec, bundleFromSpec } from "./js/app/models.js";
import { loadModel, loadBundleOnly, startEngine } from "./js/app/loading.js";
import { wireControls, applyPanels, reportHeight } from "./js/app/controls.js";
import { installStateHook, installDebugHook } from "./js/app/testhooks.js";

const SECOND_PROMPT = "a big red circle"; // the default page's second prompt (demo vocabulary)

// What the views may read and do (js/views/* get this as `app`).
const app = {
  state,
  get engine() {
    return runtime.engine;
  },
  selectFeature,
  selectPair,
  addPrompt,
  editPrompt,
  removeInput,
  addImageFiles,
  heatmap: (bytes, onProgress) => runtime.engine.heatmap(bytes, onProgress),
  renderScene: (name) => runtime.engine.renderScene(name, state.sceneSide),
};

// Results and functions of the applications' panels (probe, attack, control), for tests and
// the console.
const apps = { result: {}, api: null };

function createViews() {
  views.inputs = new InputsView(app);
  views.features = { render: () => renderFeatures($("features-view"), app) };
  views.similarity = { render: () => renderSimilarity($("similarity-view"), app) };
  views.dictionary = new DictionaryView(app);
  views.compare = new CompareView();
  views.feature = new FeatureView(app);
  views.heatmap = new HeatmapView(app);
}

function mountApps() {
  apps.api = mountApplications(
    { probe: $("probe-view"), attack: $("attack-view"), control: $("control-view") },
    {
      call: async (cmd, args, opts) => {
        await runtime.engine.ensureReady();
        return runtime.engine.call(cmd, args, opts);
      },
      engineReady: () => runtime.engine.ready,
      backend: () => state.model.backend || "engine",
      isDemo: () => state.modelParam === "demo",
      assetBase: new URL("assets/", document.baseURI),
      featureClass: (id) => state.bundle?.byId.get(id)?.class ?? "Rare",
      openFeature: (id) => selectFeature(id),
      result: apps.result,
    },
  );
  const useBundle = (blobs, label, thumbs = null) => loadBundleOnly({ label, param: "", files: Promise.resolve(blobs), thumbs });
  const library = mountLibrary($("saved-bundles-view"), { useBundle });
  apps.api.build = mountBuild($("build-view"), {
    call: async (cmd, args, opts) => {
      await runtime.engine.ensureReady();
      return runtime.engine.call(cmd, args, opts);
    },
    modelLabel: () => state.model.label,
    modelKey: () => state.model.hash || state.model.label,
    useBundle,
    onSaved: () => library.refresh(),
    result: apps.result,
  });
  $("build-show").addEventListener("click", () => {
    if (!state.panels.includes("build")) state.panels = [...state.panels, "build"];
    applyPanels();
    syncUrl();
    $("build-panel").scrollIntoView();
  });
}

// The demo images' list names each image's caption; the first one and its caption are the
// default inputs.
async function defaultInputs() {
  try {
    const res = await fetch(sources.DEMO_PATHS.images + "index.json");
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const first = (await res.json())[0];
    return { images: [sources.DEMO_PATHS.images + first.file], prompts: [first.caption, SECOND_PROMPT] };
  } catch (err) {
    showNotes([`demo images unavailable (${err.message})`]);
    return { images: [], prompts: [SECOND_PROMPT] };
  }
}

function fail(message) {
  showGlobalError(message);
  setStatus("error");
  return null;
}

// The URL's backend, model and bundle; null (with the page's error shown) if they are unusable.
function specsFromParams() {
  if (!BACKENDS.includes(state.backend)) {
    return fail(`unknown backend "${state.backend}": use ?backend=auto, webgpu or cpu`);
  }
  try {
    const model = sources.parseModelSpec(params.model);
    return { model, bundle: sources.parseBundleSpec(params.bundle, model) };
  } catch (err) {
    return fail(err.message);
  }
}

function setUpPage() {
  installStateHook(apps);
  createViews();
  $("features-legend").append(classLegend());
  wireControls();
  applyPanels();
  reportHeight();
  renderAll();
  if (params.problems.length) showNotes(params.problems);
}

async function main() {
  setUpPage();
  const specs = specsFromParams();
  if (!specs) return;
  // The wasm build is chosen in the worker (it probes for relaxed SIMD); ?wasm= overrides it.
  const workerUrl = new URL("./worker.js", import.meta.url);
  if (state.wasm !== "auto") workerUrl.searchParams.set("wasm", state.wasm);
  startEngine(workerUrl);
  installDebugHook(apps);
  mountApps();

  state.modelParam = specs.model.id;
  const model = modelFromSpec(specs.model);
  const bundle = specs.bundle ? { ...bundleFromSpec(specs.bundle), param: params.bundle } : null;
  const loading = loadModel(model, bundle, "model-error");

  const inputs = params.prompts !== null ? { images: params.images, prompts: params.prompts } : await defaultInputs();
  for (const url of inputs.images) addImageUrl(url);
  for (const p of inputs.prompts) addPrompt(p);
  await loading;
  if (state.bundle && state.panels.includes("control")) apps.api.control?.update();
}

main();
