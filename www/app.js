// monoscope main-thread UI. Never instantiates wasm: all model work happens in worker.js.

const DEFAULT_PROMPT = "a photo of an astronaut";
const DEFAULT_IMAGE = "demo/astronaut.jpg";
const BACKENDS = ["auto", "webgpu", "cpu"];
const MAX_INIT_CRASHES = 3;
const SHOWN_VALUES = 8;

const $ = (id) => document.getElementById(id);
const ui = {
  backend: $("backend"),
  model: $("model"),
  status: $("status"),
  dropzone: $("dropzone"),
  preview: $("preview"),
  hint: $("dropzone-hint"),
  input: $("image-input"),
  imageName: $("image-name"),
  form: $("text-form"),
  prompt: $("prompt"),
  run: $("run"),
  similarity: $("similarity"),
  imageEmbed: $("image-embed"),
  textEmbed: $("text-embed"),
  timing: $("timing"),
  error: $("error"),
};

// ---------------------------------------------------------------------------------------------
// Results exposed for tests and for the curious: window.__monoscope.

const result = {
  backend: null,
  image_embed: null,
  text_embed: null,
  similarity: null,
  error: null,
  runs: 0, // completed computations (success or error)
  restarts: 0, // worker restarts after a crash
};
window.__monoscope = result;

function setState(state) {
  document.body.dataset.state = state;
}

function setStatus(text) {
  ui.status.textContent = text;
}

function showError(message) {
  result.error = message;
  ui.error.textContent = message;
  ui.error.hidden = false;
  setStatus("error");
  setState("error");
}

function clearError() {
  result.error = null;
  ui.error.textContent = "";
  ui.error.hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Parameters.

const params = new URLSearchParams(location.search);
const backendParam = (params.get("backend") || "auto").toLowerCase();
const modelParam = params.get("model") || "tiny-clip";
const modelBase = `assets/${modelParam}/`;

// ---------------------------------------------------------------------------------------------
// Engine worker client: request/response over postMessage, restart after a crash.

class WorkerCrashed extends Error {
  constructor(message) {
    super(message);
    this.name = "WorkerCrashed";
  }
}

class EngineClient {
  constructor({ backend, modelBase, onCrash }) {
    this.backend = backend;
    this.modelBase = modelBase;
    this.onCrash = onCrash;
    this.worker = null;
    this.ready = null; // Promise<init result> while a worker is (being) initialised
    this.pending = new Map();
    this.nextId = 1;
    this.initCrashes = 0;
  }

  start() {
    const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "monoscope-engine" });
    worker.addEventListener("message", (ev) => this.onMessage(worker, ev.data));
    worker.addEventListener("error", (ev) => {
      ev.preventDefault();
      this.crash(worker, ev.message || "the engine worker failed to load");
    });
    worker.addEventListener("messageerror", () => this.crash(worker, "unreadable message from the engine worker"));
    this.worker = worker;
  }

  onMessage(worker, msg) {
    if (worker !== this.worker || !msg) return;
    if (msg.type === "fatal") {
      this.crash(worker, msg.error && msg.error.message);
      return;
    }
    if (msg.type === "loaded") return;
    const call = this.pending.get(msg.id);
    if (!call) return;
    this.pending.delete(msg.id);
    if (msg.ok) {
      call.resolve(msg.result);
    } else if (msg.error && msg.error.fatal) {
      // A trap (e.g. "unreachable" from a panic): this wasm instance is unusable.
      call.reject(new WorkerCrashed(msg.error.message));
      this.crash(worker, msg.error.message);
    } else {
      call.reject(new Error((msg.error && msg.error.message) || "unknown error"));
    }
  }

  crash(worker, message) {
    if (worker !== this.worker) return;
    worker.terminate();
    this.worker = null;
    this.ready = null;
    const err = new WorkerCrashed(`engine crashed: ${message || "unknown error"}`);
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
    this.onCrash(err);
  }

  call(cmd, args = {}, transfer = []) {
    if (!this.worker) this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, cmd, args }, transfer);
    });
  }

  // Starts the worker and loads the model if needed. Resolves to {backend, info, gpu}.
  ensureReady() {
    if (!this.ready) {
      if (this.initCrashes >= MAX_INIT_CRASHES) {
        return Promise.reject(new Error(`the engine crashed ${this.initCrashes} times while loading; giving up (reload the page to retry)`));
      }
      const ready = this.call("init", { backend: this.backend, modelBase: this.modelBase });
      this.ready = ready;
      ready.then(
        () => {
          this.initCrashes = 0;
        },
        (err) => {
          if (this.ready === ready) this.ready = null; // a failed load is retried on the next request
          if (err instanceof WorkerCrashed) this.initCrashes += 1;
        },
      );
    }
    return this.ready;
  }

  async embedImage(bytes) {
    await this.ensureReady();
    const copy = bytes.slice(0); // keep our copy: the transferred one is gone after the call
    return this.call("embed_image", { bytes: copy }, [copy]);
  }

  async embedText(text) {
    await this.ensureReady();
    return this.call("embed_text", { text });
  }

  // Test hook: kills the worker the hard way, to exercise the restart path.
  crashForTest() {
    return this.call("crash").catch((err) => err);
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

function formatVector(v) {
  const head = Array.from(v.slice(0, SHOWN_VALUES), (x) => (x >= 0 ? " " : "") + x.toFixed(4));
  return `[${head.join(", ")}${v.length > SHOWN_VALUES ? ", …" : ""}]  (dim ${v.length})`;
}

function cosine(a, b) {
  if (a.length !== b.length) throw new Error(`embedding sizes differ: ${a.length} vs ${b.length}`);
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

function clearResults() {
  result.image_embed = null;
  result.text_embed = null;
  result.similarity = null;
  ui.similarity.textContent = "–";
  ui.imageEmbed.textContent = "–";
  ui.textEmbed.textContent = "–";
  ui.timing.textContent = "";
}

function showEngineInfo(ready) {
  result.backend = ready.backend;
  ui.backend.textContent = ready.backend;
  let label = modelParam;
  try {
    const info = JSON.parse(ready.info);
    // {config: {projection_dim, ...}, parameters, vision_parameters, text_parameters}
    const parts = [];
    if (info?.config?.projection_dim) parts.push(`dim ${info.config.projection_dim}`);
    if (Number.isFinite(info?.parameters)) parts.push(`${(info.parameters / 1e6).toFixed(1)}M parameters`);
    if (parts.length) label = `${modelParam} (${parts.join(", ")})`;
  } catch {
    // info_json is informative only
  }
  ui.model.textContent = label;
}

// ---------------------------------------------------------------------------------------------
// The computation.

let engine = null;
let image = null; // {name, bytes: ArrayBuffer}
let generation = 0; // only the latest request may update the page

async function compute() {
  if (!engine || !image) return;
  const gen = ++generation;
  const text = ui.prompt.value;
  clearError();
  clearResults();
  setState("busy");
  try {
    setStatus(engine.ready ? "computing…" : "loading model…");
    const ready = await engine.ensureReady();
    if (gen !== generation) return;
    showEngineInfo(ready);
    setStatus("computing…");
    const t0 = performance.now();
    const imageEmbed = await engine.embedImage(image.bytes);
    const t1 = performance.now();
    const textEmbed = await engine.embedText(text);
    const t2 = performance.now();
    if (gen !== generation) return;
    const similarity = cosine(imageEmbed, textEmbed);
    result.image_embed = Array.from(imageEmbed);
    result.text_embed = Array.from(textEmbed);
    result.similarity = similarity;
    ui.imageEmbed.textContent = formatVector(imageEmbed);
    ui.textEmbed.textContent = formatVector(textEmbed);
    ui.similarity.textContent = similarity.toFixed(4);
    ui.timing.textContent = `image ${(t1 - t0).toFixed(0)} ms · text ${(t2 - t1).toFixed(0)} ms`;
    setStatus("ready");
    setState("ready");
  } catch (err) {
    if (gen !== generation) return;
    showError(err && err.message ? err.message : String(err));
  } finally {
    if (gen === generation) result.runs += 1;
  }
}

function onEngineCrash(err) {
  result.restarts += 1;
  ui.backend.textContent = "restarting…";
  console.warn(`monoscope: ${err.message}; restarting the engine worker`);
  // Restart right away so the next request does not pay for the model load.
  engine.ensureReady().then(showEngineInfo, () => {});
}

// ---------------------------------------------------------------------------------------------
// Image input.

let previewUrl = null;

async function useImageFile(file) {
  if (!file) return;
  const bytes = await file.arrayBuffer();
  setImage(file.name, bytes, file);
  await compute();
}

function setImage(name, bytes, blob) {
  image = { name, bytes };
  ui.imageName.textContent = `${name} (${(bytes.byteLength / 1024).toFixed(1)} KiB)`;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(blob);
  ui.preview.hidden = true;
  ui.preview.src = previewUrl;
}

ui.preview.addEventListener("load", () => {
  ui.preview.hidden = false;
  ui.hint.hidden = true;
});
ui.preview.addEventListener("error", () => {
  ui.preview.hidden = true;
  ui.hint.hidden = false;
});

ui.input.addEventListener("change", () => {
  const file = ui.input.files && ui.input.files[0];
  ui.input.value = ""; // choosing the same file again still fires "change"
  useImageFile(file);
});

for (const type of ["dragenter", "dragover"]) {
  ui.dropzone.addEventListener(type, (ev) => {
    ev.preventDefault();
    ui.dropzone.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  ui.dropzone.addEventListener(type, () => ui.dropzone.classList.remove("dragging"));
}
ui.dropzone.addEventListener("drop", (ev) => {
  ev.preventDefault();
  const file = ev.dataTransfer && ev.dataTransfer.files[0];
  useImageFile(file);
});

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  compute();
});

// ---------------------------------------------------------------------------------------------
// Start.

async function main() {
  ui.prompt.value = DEFAULT_PROMPT;
  if (!BACKENDS.includes(backendParam)) {
    showError(`unknown backend "${backendParam}": use ?backend=auto, webgpu or cpu`);
    return;
  }
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(modelParam)) {
    showError(`invalid model name "${modelParam}"`);
    return;
  }
  ui.model.textContent = modelParam;
  engine = new EngineClient({ backend: backendParam, modelBase, onCrash: onEngineCrash });
  window.__monoscopeDebug = { crashWorker: () => engine.crashForTest(), compute };
  setStatus("loading model…");
  engine.ensureReady().then(showEngineInfo, () => {}); // start loading while the demo image loads
  try {
    const res = await fetch(DEFAULT_IMAGE);
    if (!res.ok) throw new Error(`could not load the demo image: HTTP ${res.status}`);
    const blob = await res.blob();
    setImage("astronaut.jpg (demo)", await blob.arrayBuffer(), blob);
  } catch (err) {
    showError(err.message);
    return;
  }
  await compute();
}

main();
