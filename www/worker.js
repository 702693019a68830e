// monoscope engine worker: the only place the wasm module is instantiated.
//
// Protocol (main thread -> worker): {id, cmd, args}
//   init          {backend, model: {config, weights, tokenizer}} (Blobs) -> {backend, info, hash};
//                 sends {type: "progress", id, done, total} as tensors are placed
//   plan          {config: Blob, weightsBytes}  -> {parameters, tensors, needed_bytes, ...}, or an
//                 error saying why the model cannot fit this page's memory (before downloading it)
//   memory        {}                            -> {bytes}: this wasm instance's memory (= its peak)
//   load_bundle   {manifest, features, dictionary} (Blobs)               -> summary JSON string
//   clear_bundle  {}                                                     -> null
//   compare_bundles {a, b: {label, manifest, features, dictionary}} -> {comparison, svg} (issue 15;
//                 needs no engine: two bundles' files, compared as `monoscope compare` does)
//   analyze_image {bytes: ArrayBuffer} -> {embedding: Float32Array, activations?: Float32Array}
//   analyze_text  {text: string}       -> {embedding, activations?, truncated}
//   analyze_images {images: [bytes]}   -> [{embedding, activations?} | {error}], one forward pass
//   analyze_texts {texts: [string]}    -> [{embedding, activations?, truncated} | {error}], one pass
//   heatmap       {bytes: ArrayBuffer} -> {rows, cols, drops: Float32Array}; sends
//                 {type: "progress", id, done, total} while it runs
//   render_scene  {name, side}         -> {width, height, rgba: Uint8Array}
//   embed_image / embed_text           -> Float32Array (L2-normalised)
//   embed_images {images: [bytes]}     -> [Float32Array], one forward pass
//   split_run     {pass, bytes, part, parts, cut, ports: [MessagePort | null]} -> this worker's part
//                 of one image's pass cut between engine workers (issue 12), by token rows
//                 (cut "rows"), output columns ("cols") or columns where every part gets a
//                 head, else rows ("auto"): ports has one entry per part, null at `part`, a
//                 port to each other part's worker, over which the workers swap their
//                 shares of each round themselves (src/clip/blocks/pass.rs). Resolves
//                 to {report, timing}: report on part 0 {embedding, activations?, truncated},
//                 on the others null; timing this part's milliseconds {open, share, wait,
//                 gather, report} (open: decode and the first layer's input; share: computing
//                 its shares; wait: for the other parts' shares). A part that fails tells the
//                 others, which fail too.
//   split_abort   {pass}               -> null: stops split_run `pass` (it rejects), running or
//                 still queued; taken at once, not after the running command (the page sends
//                 it when a part's worker died)
//   parse_captions {name, bytes: Blob} -> {pairs: [[id, image, caption]], skipped: [[id, reason]]}
//                 (a TSV / CSV / COCO caption list, read by the CLI's reader)
//   build_begin   {source}             -> null: starts building a bundle (issue 11)
//   build_add     {meta: {ids, names, captions}, images: [ArrayBuffer]} -> {kept, skipped, rows}
//   build_restore {ids, names, captions, image, text} (rows stored by an earlier build) -> pairs
//   build_settings {}                  -> default {features, k, steps, batch, seed} for the pairs
//   build_use_dictionary {config, weights (Blobs), saelens, center} -> null: skip training
//   build_train_start {settings}       -> null
//   build_train   {steps}              -> {step, steps, loss, fvu: [image, text], dead_fraction}
//   build_finish  {model}              -> {manifest, features, dictionary} (Uint8Arrays)
//   build_cancel  {}                   -> null
//   crash         {}                   -> never answers; kills this worker (tests the restart path)
//   hold          {ms}                 -> null after ms, the worker's event loop free meanwhile
//                 (tests: a command that waits, as reading a Blob does)
//   crash_in_split {round}             -> null; the next split_run kills this worker before that
//                 round, without telling the other parts (tests split_abort)
// Replies: {id, ok: true, result} or {id, ok: false, error: {name, message, fatal}}.
// Unsolicited: {type: "fatal", error: {...}} when the wasm instance is no longer usable
// (a trap such as a panic's "unreachable", or an uncaught error); the page then restarts us.
//
// Files arrive as Blobs (structured clone shares them, it does not copy the bytes), so the page
// can hand the same model to a restarted worker without holding a second copy in its own heap.

import { hasRelaxedSimd } from "./js/wasm-features.js";

// The site has two builds of the same crate (scripts/build_relaxed.sh): relaxed/ runs the
// linear layers' GEMM on WebAssembly relaxed SIMD (f32x4.relaxed_madd, a fused multiply-add
// where the CPU has one; the page 1.1-1.2x faster than with ./ in Chromium, README), which a browser
// without relaxed SIMD refuses to compile; ./ uses SIMD128 only. `wasm` on this script's
// URL (the page passes its own ?wasm= through) picks one: auto (default: relaxed where the
// probe in js/wasm-features.js validates), relaxed or simd128.
const RELAXED_SIMD = hasRelaxedSimd();
const WASM_BUILDS = {
  relaxed: { dir: "./relaxed/", name: "relaxed SIMD" },
  simd128: { dir: "./", name: "SIMD128" },
};
const asked = new URL(self.location.href).searchParams.get("wasm") || "auto";
const wasmBuild = WASM_BUILDS[asked] || (RELAXED_SIMD ? WASM_BUILDS.relaxed : WASM_BUILDS.simd128);

// The bindings (Engine, plan_model, ...), once the module is instantiated.
let wasm = null;
// Compile the wasm as soon as the worker starts, while the page is still fetching the model.
const wasmReady = (async () => {
  if (wasmBuild === WASM_BUILDS.relaxed && !RELAXED_SIMD) {
    throw new Error("this browser has no WebAssembly relaxed SIMD: open the page with ?wasm=auto or ?wasm=simd128");
  }
  const bindings = await import(`${wasmBuild.dir}monoscope.js`);
  await bindings.default({ module_or_path: new URL(`${wasmBuild.dir}monoscope_bg.wasm`, import.meta.url) });
  wasm = bindings;
})();
// A failed compile is reported by the first command that awaits it, not as an unhandled rejection.
wasmReady.catch(() => {});

let engine = null;
let lastPanic = null; // console_error_panic_hook reports the panic message via console.error

const consoleError = console.error.bind(console);
console.error = (...args) => {
  const text = args.map((a) => (typeof a === "string" ? a : String(a))).join(" ");
  // "panicked at src/x.rs:1:2:\nmessage\n\nStack: ..." -> "message (at src/x.rs:1:2)"
  const m = /panicked at ([^\n]*?):?\n([\s\S]*?)(?:\n\s*\nStack:|$)/.exec(text);
  if (m) lastPanic = `panic: ${m[2].trim()} (at ${m[1]})`;
  else if (text.includes("panicked at")) lastPanic = text.split("\n\nStack:")[0];
  consoleError(...args);
};

function describe(err) {
  const fatal = err instanceof WebAssembly.RuntimeError;
  let message = err && typeof err === "object" && "message" in err ? String(err.message) : String(err);
  if (fatal && lastPanic) message = `${lastPanic} [wasm: ${message}]`;
  return { name: (err && err.name) || "Error", message, fatal };
}

function fatal(err) {
  self.postMessage({ type: "fatal", error: { ...describe(err), fatal: true } });
}

// Panics inside async wasm calls surface here (the trap happens while polling a future,
// outside any promise chain), not as a rejected call.
self.addEventListener("error", (ev) => {
  ev.preventDefault();
  fatal(ev.error || ev.message);
});
self.addEventListener("unhandledrejection", (ev) => {
  ev.preventDefault();
  fatal(ev.reason);
});

async function bytesOf(blob, what) {
  if (!(blob instanceof Blob)) throw new Error(`${what} is missing`);
  return new Uint8Array(await blob.arrayBuffer());
}

// Says when WebGPU runs on a software fallback adapter (e.g. SwiftShader), so users know
// why it is slow; the engine and this query get the same adapter from the browser.
async function backendLabel(name) {
  if (name !== "webgpu" || !self.navigator.gpu) return name;
  try {
    const adapter = await self.navigator.gpu.requestAdapter();
    const info = adapter && (adapter.info || {});
    if (adapter && (adapter.isFallbackAdapter || info.isFallbackAdapter)) return "webgpu (fallback adapter)";
  } catch (_) {
    // The label is informative only.
  }
  return name;
}

let attack = null; // the running AttackSession, if any
let build = null; // the BuildSession being built, if any

function dropBuild() {
  if (build) build.free();
  build = null;
}

function needBuild() {
  if (!build) throw new Error("no bundle is being built");
  return build;
}

// The running split_run: {pass, abort(why)}, or null.
let splitRunning = null;
// Passes the page stopped (split_abort) before their split_run began here: it then fails at
// once, instead of waiting for a worker that is gone. Pass numbers grow (engine.js splitSeq),
// so an abort for a pass at or below the last one begun here is for a pass already over and
// is not kept.
const stoppedPasses = new Set();
let lastSplitPass = -1;
// Test hook (crash_in_split): the round before which the next split_run dies, or null.
let crashInSplit = null;

// Messages from one port, taken in order: `take()` resolves to the next.
function inbox(port) {
  const queue = [];
  let waiting = null;
  const put = (msg) => {
    if (waiting) {
      const ok = waiting;
      waiting = null;
      ok(msg);
    } else queue.push(msg);
  };
  port.onmessage = (ev) => put(ev.data);
  return { put, take: () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((ok) => (waiting = ok))) };
}

function dropAttack() {
  if (attack) attack.free();
  attack = null;
}

function needEngine() {
  if (!engine) throw new Error("no model is loaded");
  return engine;
}

const handlers = {
  async init({ backend, model }, id) {
    await wasmReady;
    const [config, weights, tokenizer] = await Promise.all([
      bytesOf(model?.config, "config.json"),
      bytesOf(model?.weights, "model.safetensors"),
      bytesOf(model?.tokenizer, "tokenizer.json"),
    ]);
    // Build the new engine before dropping the old one: if these files are bad, the page
    // keeps working with the model it had.
    const progress = (done, total) => self.postMessage({ type: "progress", id, done, total });
    const next = await wasm.Engine.create(backend, config, weights, tokenizer, progress);
    dropAttack(); // it holds the old model
    dropBuild();
    if (engine) engine.free();
    engine = next;
    return { backend: await backendLabel(engine.backend()), wasm: wasmBuild.name, info: engine.info_json(), hash: engine.model_hash() };
  },
  async plan({ config, weightsBytes }) {
    await wasmReady;
    return JSON.parse(wasm.plan_model(await bytesOf(config, "config.json"), Number(weightsBytes) || 0));
  },
  async memory() {
    await wasmReady;
    return { bytes: wasm.wasm_memory_bytes() };
  },
  async load_bundle({ manifest, features, dictionary }) {
    const e = needEngine();
    const [m, f, d] = await Promise.all([
      bytesOf(manifest, "manifest.json"),
      bytesOf(features, "features.json"),
      bytesOf(dictionary, "dictionary.safetensors"),
    ]);
    return e.load_bundle(m, f, d);
  },
  async compare_bundles({ a, b }) {
    await wasmReady;
    const files = (x) =>
      Promise.all([bytesOf(x.manifest, "manifest.json"), bytesOf(x.features, "features.json"), bytesOf(x.dictionary, "dictionary.safetensors")]);
    const [fa, fb] = await Promise.all([files(a), files(b)]);
    return JSON.parse(wasm.compare_bundles(String(a.label), ...fa, String(b.label), ...fb));
  },
  async clear_bundle() {
    needEngine().clear_bundle();
    return null;
  },
  async analyze_image({ bytes }) {
    return await needEngine().analyze_image(new Uint8Array(bytes));
  },
  async analyze_text({ text }) {
    return await needEngine().analyze_text(String(text));
  },
  async analyze_images({ images }) {
    return await needEngine().analyze_images((images || []).map((b) => new Uint8Array(b)));
  },
  async analyze_texts({ texts }) {
    return await needEngine().analyze_texts((texts || []).map(String));
  },
  async heatmap({ bytes }, id) {
    const progress = (done, total) => self.postMessage({ type: "progress", id, done, total });
    return await needEngine().heatmap(new Uint8Array(bytes), progress);
  },
  async render_scene({ name, side }) {
    return needEngine().render_scene(String(name), side >>> 0);
  },
  async embed_image({ bytes }) {
    return await needEngine().embed_image(new Uint8Array(bytes));
  },
  async embed_images({ images }) {
    return await needEngine().embed_images((images || []).map((b) => new Uint8Array(b)));
  },
  // One image's pass cut between engine workers (issue 12): every part sends its share of
  // each round to the others straight over the ports, not through the page.
  async split_run({ pass: id, bytes, part, parts, cut, ports }) {
    [part, parts] = [part >>> 0, parts >>> 0];
    const peers = Array.from(ports || []);
    const stopped = stoppedPasses.delete(id);
    if (Number.isInteger(id)) lastSplitPass = Math.max(lastSplitPass, id);
    if (stopped || peers.length !== parts || peers.some((p, i) => (i === part) !== (p == null))) {
      for (const p of peers) p?.close();
      throw new Error(stopped ? "the split pass stopped: stopped by the page" : `split_run wants a port to each of the other ${parts - 1} parts`);
    }
    const boxes = peers.map((p) => p && inbox(p));
    const others = peers.filter(Boolean);
    // Part i's share goes to every other part: copies, and the last one moved.
    const post = (msg, buffer) =>
      others.forEach((p, i) => p.postMessage(msg, i === others.length - 1 && buffer ? [buffer] : []));
    splitRunning = { pass: id, abort: (why) => boxes.forEach((b) => b?.put({ abort: why })) };
    let pass = null;
    // Where the part's time goes (bench_web.mjs prints it): summed over the rounds.
    const timing = { open: 0, share: 0, wait: 0, gather: 0, report: 0 };
    let t = performance.now();
    const lap = (phase) => {
      const now = performance.now();
      timing[phase] += now - t;
      t = now;
    };
    try {
      pass = needEngine().split_image(new Uint8Array(bytes), part, parts, String(cut));
      lap("open");
      for (let round = 0; ; round++) {
        if (round === crashInSplit) {
          // As a worker that crashed: the page hears of it, the other parts do not.
          crashInSplit = null;
          fatal(new Error("simulated worker crash in a split pass"));
          return new Promise(() => {});
        }
        const share = pass.share();
        post({ share }, share.buffer);
        lap("share");
        const got = await Promise.all(boxes.map((b) => b?.take()));
        lap("wait");
        const stop = got.find((m) => m && "abort" in m);
        if (stop) throw new Error(`the split pass stopped: ${stop.abort}`);
        // This part's own share as null: it never left its pass.
        pass.gather(got.map((m) => (m ? m.share : null)));
        lap("gather");
        if (pass.done()) break;
      }
      const done = pass;
      pass = null;
      let report = null;
      if (part === 0) report = await done.report(); // report() frees the part
      else done.free();
      lap("report");
      return { report, timing };
    } catch (err) {
      post({ abort: describe(err).message });
      throw err;
    } finally {
      if (pass) pass.free();
      for (const p of others) p.close();
      splitRunning = null;
    }
  },
  async embed_text({ text }) {
    return await needEngine().embed_text(String(text));
  },
  // Applications (issue 6). One attack session at a time; the page steps it so that it can
  // show progress and cancel between steps.
  async probe({ request, images, groups }, id) {
    const progress = (done, total) => self.postMessage({ type: "progress", id, done, total });
    const bytes = (images || []).map((b) => new Uint8Array(b));
    return await needEngine().probe(String(request), bytes, Uint32Array.from(groups || []), progress);
  },
  async attack_begin({ bytes, request }) {
    dropAttack();
    attack = await needEngine().attack_begin(new Uint8Array(bytes), String(request));
    return { steps: attack.steps_total() };
  },
  async attack_step() {
    if (!attack) throw new Error("no attack is running");
    const objective = await attack.step();
    return { objective, step: attack.steps_done(), done: attack.done() };
  },
  async attack_finish() {
    if (!attack) throw new Error("no attack is running");
    try {
      return await attack.finish();
    } finally {
      dropAttack();
    }
  },
  async attack_cancel() {
    dropAttack();
    return null;
  },
  async load_decoder({ config, weights }) {
    const [c, w] = await Promise.all([bytesOf(config, "decoder.json"), bytesOf(weights, "decoder.safetensors")]);
    needEngine().load_decoder(c, w);
    return null;
  },
  async control({ text, scales }) {
    return await needEngine().control(String(text), JSON.stringify(scales));
  },
  async export_embedding({ embedding, format, metadata }) {
    const e = needEngine();
    const v = new Float32Array(embedding);
    if (format === "npy") return e.export_npy(v);
    return e.export_safetensors(v, String(metadata || "{}"));
  },
  async parse_captions({ name, bytes }) {
    await wasmReady;
    return JSON.parse(wasm.parse_caption_list(String(name), await bytesOf(bytes, String(name))));
  },
  async build_begin({ source }) {
    dropBuild();
    build = needEngine().build_begin(String(source || "picked files"));
    return null;
  },
  async build_add({ meta, images }) {
    const b = needBuild();
    return await b.add(JSON.stringify(meta), (images || []).map((x) => new Uint8Array(x)));
  },
  async build_restore({ ids, names, captions, image, text }) {
    const b = needBuild();
    b.add_rows(JSON.stringify({ ids: Array.from(ids), names, captions }), new Float32Array(image), new Float32Array(text));
    return b.pairs();
  },
  async build_settings() {
    return JSON.parse(needBuild().default_settings());
  },
  async build_use_dictionary({ config, weights, saelens, center }) {
    const b = needBuild();
    const [c, w] = await Promise.all([bytesOf(config, "dictionary config"), bytesOf(weights, "dictionary weights")]);
    b.use_dictionary(c, w, Boolean(saelens), Boolean(center));
    return null;
  },
  async build_train_start({ settings }) {
    needBuild().start_training(JSON.stringify(settings));
    return null;
  },
  async build_train({ steps }) {
    return JSON.parse(needBuild().train(Math.max(1, steps >>> 0)));
  },
  async build_finish({ model }) {
    const b = needBuild();
    try {
      return await b.finish(String(model || "model"));
    } finally {
      dropBuild();
    }
  },
  async build_cancel() {
    dropBuild();
    return null;
  },
  async hold({ ms }) {
    await new Promise((ok) => setTimeout(ok, Number(ms) || 0));
    return null;
  },
  async crash_in_split({ round }) {
    crashInSplit = round >>> 0;
    return null;
  },
  async crash() {
    setTimeout(() => {
      throw new Error("simulated worker crash");
    }, 0);
    return new Promise(() => {});
  },
};

// Typed arrays in a result are copied into fresh buffers and transferred: a result could be
// a view into wasm memory, which must not be transferred (or detached).
function transferable(result) {
  const transfer = [];
  const own = (v) => {
    if (!ArrayBuffer.isView(v)) return v;
    const copy = v.slice();
    transfer.push(copy.buffer);
    return copy;
  };
  if (ArrayBuffer.isView(result)) return { result: own(result), transfer };
  if (result && typeof result === "object" && Object.getPrototypeOf(result) === Object.prototype) {
    const out = {};
    for (const [k, v] of Object.entries(result)) out[k] = own(v);
    return { result: out, transfer };
  }
  return { result, transfer };
}

// One command at a time: the engine's futures share one model (and, on WebGPU, one queue), and
// in-order answers keep the page's bookkeeping simple.
let queue = Promise.resolve();

self.addEventListener("message", (ev) => {
  const { id, cmd, args } = ev.data || {};
  if (cmd === "split_abort") {
    // Not queued: the split_run it stops is the running command, or one still queued.
    const pass = args?.pass;
    if (splitRunning && splitRunning.pass === pass) splitRunning.abort("stopped by the page");
    else if (!(Number.isInteger(pass) && pass <= lastSplitPass)) stoppedPasses.add(pass);
    self.postMessage({ id, ok: true, result: null });
    return;
  }
  const handler = Object.hasOwn(handlers, cmd) ? handlers[cmd] : null;
  if (!handler) {
    self.postMessage({ id, ok: false, error: { name: "Error", message: `unknown command ${cmd}`, fatal: false } });
    return;
  }
  queue = queue.then(async () => {
    try {
      const { result, transfer } = transferable(await handler(args || {}, id));
      self.postMessage({ id, ok: true, result }, transfer);
    } catch (err) {
      self.postMessage({ id, ok: false, error: describe(err) });
    }
  });
});

self.postMessage({ type: "loaded" });
