// Client of the engine worker (www/worker.js): request/response over postMessage, and a
// restart with the same model and bundle after a crash. The main thread never runs wasm.

const MAX_INIT_CRASHES = 3;
// Helper workers that crash or fail to load this many times are not started again.
const MAX_HELPER_FAILURES = 3;

export class WorkerCrashed extends Error {
  constructor(message) {
    super(message);
    this.name = "WorkerCrashed";
  }
}

export class EngineClient {
  // workerUrl: URL of worker.js. onCrash(err) is called after the worker died and was dropped.
  // helpers: extra engine workers for batches on the CPU backend (issue 12). The wasm build
  // runs on one thread (wasm threads need a nightly toolchain), so a batch of inputs is
  // shared between this worker and `helpers` more, each with its own copy of the model (the
  // model's memory times 1 + helpers). They follow this engine's model and bundle, serve
  // analyzeImages / analyzeTexts / embedImages and single images (whose pass is cut between
  // the workers: splitImage), and one that crashes is dropped (its share goes to this worker).
  constructor({ workerUrl, backend, onCrash, helpers = 0 }) {
    this.workerUrl = workerUrl;
    this.backend = backend;
    this.onCrash = onCrash;
    this.helperCount = helpers;
    this.helpers = []; // {client, model, bundle, synced, calls}
    this.helperFailures = 0;
    // One image on several engines: its pass cut between them (splitImage), by output
    // columns where every engine gets a head, else by token rows (src/clip/blocks/pass.rs
    // Cut::Auto; README, "Where issue 12 stands"), unless a caller asks for one.
    this.splitCut = "auto";
    this.splitPasses = 0; // passes run split (test hook)
    this.splitTiming = null; // the last split pass's parts' timings (worker.js split_run)
    this.splitSeq = 0; // the last split pass's number (split_run / split_abort)
    this.splitChain = Promise.resolve(); // one split pass at a time
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
      this.syncHelpers();
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
    this.syncHelpers();
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
    this.syncHelpers();
  }

  // Engines that take a share of the next batch: this one and every helper holding its
  // model and bundle.
  get parallelism() {
    return 1 + this.helpers.filter((h) => h.synced).length;
  }

  // Brings the helpers to this engine's model and bundle, in the background: until a helper
  // has them, batches run without it. Helpers exist only on the CPU backend.
  syncHelpers() {
    const wanted = this.loaded?.backend === "cpu" && this.helperFailures < MAX_HELPER_FAILURES ? this.helperCount : 0;
    while (this.helpers.length > wanted) this.dropHelper(this.helpers[this.helpers.length - 1], false);
    while (this.helpers.length < wanted) {
      const h = { client: null, model: null, bundle: null, synced: false, calls: 0 };
      h.client = new EngineClient({ workerUrl: this.workerUrl, backend: "cpu", onCrash: () => this.dropHelper(h, true) });
      this.helpers.push(h);
    }
    for (const h of this.helpers) {
      if (h.model === this.model && h.bundle === this.bundle) continue;
      const [model, bundle] = [this.model, this.bundle];
      // Same model: only the bundle changes (no second download or load of the weights).
      let job;
      if (h.model !== model) job = h.client.load(model, bundle).then((r) => !r.bundleError);
      else if (bundle) job = h.client.loadBundle(bundle).then(() => true);
      else job = h.client.clearBundle().then(() => true);
      Object.assign(h, { model, bundle, synced: false });
      job.then(
        (ok) => {
          if (h.model !== model || h.bundle !== bundle) return; // superseded meanwhile
          if (ok) h.synced = true;
          else this.dropHelper(h, true);
        },
        () => h.model === model && h.bundle === bundle && this.dropHelper(h, true),
      );
    }
  }

  dropHelper(h, failed) {
    const i = this.helpers.indexOf(h);
    if (i < 0) return;
    this.helpers.splice(i, 1);
    h.synced = false;
    if (failed) this.helperFailures += 1;
    // Its calls in flight reject (their slices then run on this engine); no restart.
    if (h.client.worker) h.client.crash(h.client.worker, "helper engine dropped");
  }

  // Runs `cmd` over `list` (encoded images or prompts, by `key`), shared between this engine
  // and its synced helpers in contiguous slices; resolves to the results in list order. A
  // helper's slice that fails runs here instead.
  async shared(cmd, key, list) {
    await this.ensureReady();
    if (key === "images" && list.length === 1) {
      const r = await this.splitImage(list[0]);
      if (r) return [cmd === "embed_images" ? r.embedding : r];
    }
    const helpers = this.helpers.filter((h) => h.synced);
    const per = Math.ceil(list.length / (1 + helpers.length));
    if (!helpers.length || per >= list.length) return this.sendList(cmd, key, list);
    const slices = [];
    for (let i = 0; i < list.length; i += per) slices.push(list.slice(i, i + per));
    const parts = await Promise.all(
      slices.map((slice, i) =>
        i === 0
          ? this.sendList(cmd, key, slice)
          : (helpers[i - 1].calls++, helpers[i - 1].client.sendList(cmd, key, slice)).catch((err) => {
              if (err instanceof WorkerCrashed) this.dropHelper(helpers[i - 1], true);
              return this.sendList(cmd, key, slice);
            }),
      ),
    );
    return parts.flat();
  }

  // One image on this engine and its synced helpers at once (issue 12). A batch is shared
  // by whole images, so a single image used to keep one worker busy and leave the others
  // idle; instead its pass is cut between the workers, by output columns ("cols", and
  // "auto" where every worker gets a head: each worker reads its share of each weight, and
  // the workers swap their columns four times a layer, src/clip/blocks/cols.rs) or token
  // rows ("rows": each worker runs its rows through every weight, and the workers swap keys
  // and values once a layer, src/clip/blocks/split.rs), over MessageChannels between them,
  // not through this thread.
  // The result is bit for bit that of one engine. Resolves to {embedding, activations?,
  // truncated}, or to null where the pass does not split (no synced helper, a backend or
  // model without the host path, a file that cannot be decoded, a helper that failed):
  // the caller then runs the image on this engine alone, which reports a bad file as usual.
  async splitImage(bytes, cut = this.splitCut) {
    if (!this.helpers.some((h) => h.synced) || this.loaded?.backend !== "cpu") return null;
    const run = this.splitChain.then(() => this.runSplit(bytes, cut));
    this.splitChain = run.catch(() => {});
    return run;
  }

  async runSplit(bytes, cut) {
    const helpers = this.helpers.filter((h) => h.synced);
    if (!helpers.length) return null;
    const clients = [this, ...helpers.map((h) => h.client)];
    const parts = clients.length;
    const pass = ++this.splitSeq;
    // A channel between every two parts: ports[i][j] is part i's end towards part j.
    const ports = clients.map(() => new Array(parts).fill(null));
    for (let i = 0; i < parts; i++) {
      for (let j = i + 1; j < parts; j++) {
        const { port1, port2 } = new MessageChannel();
        [ports[i][j], ports[j][i]] = [port1, port2];
      }
    }
    try {
      const reports = await Promise.all(
        clients.map((c, part) => {
          const copy = bytes.slice(0); // each worker decodes the file itself
          const own = ports[part].filter(Boolean);
          return c.call("split_run", { pass, bytes: copy, part, parts, cut, ports: ports[part] }, { transfer: [copy, ...own] });
        }),
      );
      for (const h of helpers) h.calls++;
      this.splitPasses += 1;
      this.splitTiming = reports.map((r) => r.timing);
      return reports[0].report;
    } catch (err) {
      // A crash of this engine goes to the caller, as in a batch; a helper that crashed has
      // been dropped (its onCrash), and the parts still waiting for it are stopped. Anything
      // else (a file that cannot be decoded, a backend without the host path): every part
      // has failed or been told by the one that did, and the caller runs the image whole.
      if (!this.worker) throw err;
      // (A part still queued behind other work is stopped too, when it begins.)
      for (const c of clients) if (c.worker) c.call("split_abort", { pass }).catch(() => {});
      return null;
    }
  }

  sendList(cmd, key, list) {
    if (key === "texts") return this.call(cmd, { texts: list });
    const copies = list.map((b) => b.slice(0)); // keep our copies: transferred ones are gone
    return this.call(cmd, { [key]: copies }, { transfer: copies });
  }

  // `whole`: on this engine alone, never split between workers (tests compare the two);
  // `cut`: how a split pass is cut ("auto", "rows" or "cols"; tests and bench_web.mjs compare
  // them).
  async analyzeImage(bytes, { whole = false, cut = this.splitCut } = {}) {
    await this.ensureReady();
    if (!whole) {
      const r = await this.splitImage(bytes, cut);
      if (r) return r;
    }
    const copy = bytes.slice(0); // keep our copy: the transferred one is gone after the call
    return this.call("analyze_image", { bytes: copy }, { transfer: [copy] });
  }

  // Several encoded images, one forward pass per engine (see `helpers`): resolves to one
  // entry per image, {embedding, activations?} or {error} (an unreadable file fails alone).
  analyzeImages(list) {
    return this.shared("analyze_images", "images", list);
  }

  // Several prompts, one forward pass per engine: one entry per prompt, {embedding,
  // activations?, truncated} or {error}.
  analyzeTexts(texts) {
    return this.shared("analyze_texts", "texts", texts);
  }

  // Embeddings of several encoded images, one forward pass per engine (benchmarks).
  embedImages(list) {
    return this.shared("embed_images", "images", list);
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

  // Test hook: the first helper's next split pass dies before round `round`.
  crashHelperInSplitForTest(round) {
    return this.helpers[0] ? this.helpers[0].client.call("crash_in_split", { round }) : Promise.reject(new Error("no helper"));
  }

  // Test hook: a command that holds this worker's queue for `ms` while its event loop is free.
  holdForTest(ms) {
    return this.call("hold", { ms });
  }

  // Test hook: kills the worker the hard way, to exercise the restart path.
  crashForTest() {
    return this.call("crash").catch((err) => err);
  }
}
