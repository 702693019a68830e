// monoscope engine worker: the only place the wasm module is instantiated.
//
// Protocol (main thread -> worker): {id, cmd, args}
//   init        {backend, modelBase}  -> {backend, info, gpu}
//   embed_image {bytes: ArrayBuffer}  -> Float32Array (L2-normalised)
//   embed_text  {text: string}        -> Float32Array (L2-normalised)
//   crash       {}                    -> never answers; kills this worker (tests the restart path)
// Replies: {id, ok: true, result} or {id, ok: false, error: {name, message, fatal}}.
// Unsolicited: {type: "fatal", error: {...}} when the wasm instance is no longer usable
// (a trap such as a panic's "unreachable", or an uncaught error); the page then restarts us.

import init, { Engine } from "./monoscope.js";

let wasmReady = null;
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

async function fetchBytes(url) {
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`could not load ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
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

const handlers = {
  async init({ backend, modelBase }) {
    if (!wasmReady) {
      wasmReady = init({ module_or_path: new URL("./monoscope_bg.wasm", import.meta.url) });
    }
    await wasmReady;
    const base = new URL(modelBase, self.location.href);
    if (base.origin !== self.location.origin) throw new Error("model must be served from this origin");
    const [config, weights, tokenizer] = await Promise.all([
      fetchBytes(new URL("config.json", base)),
      fetchBytes(new URL("model.safetensors", base)),
      fetchBytes(new URL("tokenizer.json", base)),
    ]);
    if (engine) {
      engine.free();
      engine = null;
    }
    engine = await Engine.create(backend, config, weights, tokenizer);
    return {
      backend: await backendLabel(engine.backend()),
      info: engine.info_json(),
      gpu: "gpu" in self.navigator,
    };
  },
  async embed_image({ bytes }) {
    if (!engine) throw new Error("engine not initialised");
    return await engine.embed_image(new Uint8Array(bytes));
  },
  async embed_text({ text }) {
    if (!engine) throw new Error("engine not initialised");
    return await engine.embed_text(String(text));
  },
  async crash() {
    setTimeout(() => {
      throw new Error("simulated worker crash");
    }, 0);
    return new Promise(() => {});
  },
};

self.addEventListener("message", async (ev) => {
  const { id, cmd, args } = ev.data || {};
  const handler = Object.hasOwn(handlers, cmd) ? handlers[cmd] : null;
  if (!handler) {
    self.postMessage({ id, ok: false, error: { name: "Error", message: `unknown command ${cmd}`, fatal: false } });
    return;
  }
  try {
    let result = await handler(args || {});
    let transfer = [];
    if (ArrayBuffer.isView(result)) {
      // Copy: the result could be a view into wasm memory, which cannot be transferred.
      result = result.slice();
      transfer = [result.buffer];
    }
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (err) {
    const error = describe(err);
    self.postMessage({ id, ok: false, error });
  }
});

self.postMessage({ type: "loaded" });
