// Client of the engine worker (www/worker.js): request/response over postMessage, and a
// restart with the same model and bundle after a crash. The main thread never runs wasm.

const MAX_INIT_CRASHES = 3;

export class WorkerCrashed extends Error {
  constructor(message) {
    super(message);
    this.name = "WorkerCrashed";
  }
}

export class EngineClient {
  // workerUrl: URL of worker.js. onCrash(err) is called after the worker died and was dropped.
  constructor({ workerUrl, backend, onCrash }) {
    this.workerUrl = workerUrl;
    this.backend = backend;
    this.onCrash = onCrash;
    this.worker = null;
    this.pending = new Map(); // id -> {resolve, reject, onProgress}
    this.nextId = 1;
    // What the engine holds once `ready` resolves; a restarted worker is brought back to it.
    this.model = null; // {config, weights, tokenizer} Blobs
    this.bundle = null; // {manifest, features, dictionary} Blobs, or null
    this.ready = null; // Promise<{backend, info, hash}> while the worker holds (or loads) them
    this.initCrashes = 0;
  }

  // Starts the worker early so the wasm compiles while the page fetches the model.
  start() {
    if (this.worker) return;
    const worker = new Worker(this.workerUrl, { type: "module", name: "monoscope-engine" });
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
    if (msg.type === "progress") {
      call.onProgress?.(msg.done, msg.total);
      return;
    }
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

  call(cmd, args = {}, { transfer = [], onProgress = null } = {}) {
    this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, cmd, args }, transfer);
    });
  }

  // Switches to another model (and bundle). Resolves to {backend, info, hash, bundle: summary
  // JSON | null, bundleError: message | null}: a bad bundle does not make the model unusable,
  // so it is reported apart. If the model fails to load, the worker keeps the model it had
  // (it builds the new engine before dropping the old one) and requests keep going to it.
  // onProgress(placed, total): parameter tensors placed while the model loads.
  load(model, bundle, onProgress = null) {
    const previous = this.ready;
    const hadModel = this.model !== null;
    const attempt = (async () => {
      if (previous) await previous.catch(() => {});
      const loaded = await this.call("init", { backend: this.backend, model }, { onProgress });
      this.model = model;
      this.bundle = null;
      let summary = null;
      let bundleError = null;
      if (bundle) {
        try {
          summary = await this.call("load_bundle", bundle);
          this.bundle = bundle;
        } catch (err) {
          if (err instanceof WorkerCrashed) throw err;
          bundleError = err.message;
        }
      }
      this.initCrashes = 0;
      this.loaded = loaded;
      return { ...loaded, bundle: summary, bundleError };
    })();
    const ready = attempt.then(
      (r) => r,
      async (err) => {
        // Requests that waited for the new model go to the old one (or fail without one).
        if (!hadModel || err instanceof WorkerCrashed) {
          if (this.ready === ready) this.ready = null;
          throw err;
        }
        if (previous) return previous;
        if (this.ready === ready) this.ready = null;
        return this.ensureReady();
      },
    );
    ready.catch(() => {});
    this.ready = ready;
    return attempt;
  }

  // Resolves when the worker holds this.model (and this.bundle), reloading them into a
  // restarted worker.
  ensureReady() {
    if (this.ready) return this.ready;
    if (!this.model) return Promise.reject(new Error("no model is loaded"));
    if (this.initCrashes >= MAX_INIT_CRASHES) {
      return Promise.reject(
        new Error(`the engine crashed ${this.initCrashes} times while loading; giving up (reload the page to retry)`),
      );
    }
    const model = this.model;
    const bundle = this.bundle;
    const ready = (async () => {
      const loaded = await this.call("init", { backend: this.backend, model });
      if (bundle) await this.call("load_bundle", bundle);
      return loaded;
    })();
    this.ready = ready;
    ready.then(
      () => {
        if (this.ready === ready) this.initCrashes = 0;
      },
      (err) => {
        if (this.ready === ready) this.ready = null; // a failed load is retried on the next request
        if (err instanceof WorkerCrashed) this.initCrashes += 1;
      },
    );
    return ready;
  }

  // Whether a model with this config.json (a Blob) and weights size fits this page's memory;
  // resolves to the plan, or rejects with the reason it cannot fit. Runs before a download.
  plan(config, weightsBytes) {
    return this.call("plan", { config, weightsBytes });
  }

  // Bytes of wasm memory the engine holds (its peak so far).
  async memoryBytes() {
    return (await this.call("memory")).bytes;
  }

  // Loads another bundle into the running engine; resolves to its summary JSON. On failure
  // the engine keeps the bundle it had (the Rust side replaces it only when the new one is valid).
  async loadBundle(bundle) {
    await this.ensureReady();
    const summary = await this.call("load_bundle", bundle);
    this.bundle = bundle;
    return summary;
  }

  // The loaded bundle against another one (blobs {manifest, features, dictionary}):
  // resolves to {comparison, svg}, as `monoscope compare` computes them.
  async compareWith(other, label, ownLabel) {
    await this.ensureReady();
    if (!this.bundle) throw new Error("load a bundle first: the comparison is between the loaded bundle and another");
    return this.call("compare_bundles", { a: { label: ownLabel, ...this.bundle }, b: { label, ...other } });
  }

  async clearBundle() {
    await this.ensureReady();
    await this.call("clear_bundle");
    this.bundle = null;
  }

  async analyzeImage(bytes) {
    await this.ensureReady();
    const copy = bytes.slice(0); // keep our copy: the transferred one is gone after the call
    return this.call("analyze_image", { bytes: copy }, { transfer: [copy] });
  }

  // Embeddings of several encoded images in one forward pass (benchmarks; the queue still
  // sends one input at a time).
  async embedImages(list) {
    await this.ensureReady();
    const copies = list.map((b) => b.slice(0));
    return this.call("embed_images", { images: copies }, { transfer: copies });
  }

  async analyzeText(text) {
    await this.ensureReady();
    return this.call("analyze_text", { text });
  }

  async heatmap(bytes, onProgress) {
    await this.ensureReady();
    const copy = bytes.slice(0);
    return this.call("heatmap", { bytes: copy }, { transfer: [copy], onProgress });
  }

  async renderScene(name, side) {
    await this.ensureReady();
    return this.call("render_scene", { name, side });
  }

  // Test hook: kills the worker the hard way, to exercise the restart path.
  crashForTest() {
    return this.call("crash").catch((err) => err);
  }
}
