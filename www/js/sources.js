// Where models, bundles and images come from: paths on this site, the Hugging Face hub (only
// when the user asks for it), and local files. Everything is returned as Blobs, which the page
// hands to the engine worker without copying.

import { fmtBytes } from "./dom.js";
import { MAX_CONFIG_BYTES, checkConfigSize } from "./modelconfig.js";

export const DEMO_MODEL = "demo";
export const DEMO_PATHS = {
  model: "assets/demo/clip/",
  bundle: "assets/demo/bundle/",
  images: "assets/demo/images/",
};
export const HUB_ORIGIN = "https://huggingface.co";
export const HUB_CACHE = "monoscope-hub-v1";
export const DEFAULT_HUB_REPO = "openai/clip-vit-base-patch32";

export const MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json"];
export const BUNDLE_FILES = ["manifest.json", "features.json", "dictionary.safetensors"];

const NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
// owner/name as the hub spells them; no "..", no extra path segments.
const REPO_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/;

// A URL on this site (relative or absolute), or an Error saying why not.
export function sameSiteUrl(value, what = "URL") {
  let url;
  try {
    url = new URL(String(value), location.href);
  } catch {
    throw new Error(`${what} "${value}" is not a valid URL`);
  }
  if (url.origin !== location.origin) {
    throw new Error(`${what} must be on this site (${location.origin}); "${value}" is not`);
  }
  return url;
}

function dirUrl(value, what) {
  const s = String(value);
  return sameSiteUrl(s.endsWith("/") ? s : `${s}/`, what);
}

export function validRepo(repo) {
  return REPO_RE.test(repo) && !repo.includes("..");
}

// The `model` parameter: "demo", a bare name under assets/ ("tiny-clip"), a same-site directory
// path, or "hf:<owner>/<name>". Returns {kind: "url", id, base} or {kind: "hub", id, repo}.
export function parseModelSpec(value) {
  const v = (value || DEMO_MODEL).trim();
  if (v === DEMO_MODEL) return { kind: "url", id: DEMO_MODEL, base: dirUrl(DEMO_PATHS.model, "model") };
  if (v.startsWith("hf:")) {
    const repo = v.slice(3);
    if (!validRepo(repo)) throw new Error(`"${repo}" is not a Hugging Face repo id (owner/name)`);
    return { kind: "hub", id: v, repo };
  }
  if (NAME_RE.test(v)) return { kind: "url", id: v, base: dirUrl(`assets/${v}/`, "model") };
  return { kind: "url", id: v, base: dirUrl(v, "model") };
}

// The `bundle` parameter: "none", "demo", a same-site directory path, "hf:<owner>/<name>" (a
// bundle published on the hub), or empty for the model's default (the demo model's bundle; no
// bundle for other models). Returns null, {kind: "url", id, base} or {kind: "hub", id, repo}.
export function parseBundleSpec(value, modelSpec) {
  const v = (value ?? "").trim();
  if (v === "none") return null;
  if (v.startsWith("hf:")) {
    const repo = v.slice(3);
    if (!validRepo(repo)) throw new Error(`"${repo}" is not a Hugging Face repo id (owner/name)`);
    return { kind: "hub", id: v, repo };
  }
  if (v === "" || v === "default") {
    return modelSpec.id === DEMO_MODEL ? { kind: "url", id: "demo", base: dirUrl(DEMO_PATHS.bundle, "bundle") } : null;
  }
  if (v === "demo") return { kind: "url", id: "demo", base: dirUrl(DEMO_PATHS.bundle, "bundle") };
  return { kind: "url", id: v, base: dirUrl(v, "bundle") };
}

async function fetchResponse(url) {
  let res;
  try {
    res = await fetch(url, { credentials: "same-origin" });
  } catch (err) {
    throw new Error(`could not load ${url.pathname ?? url}: ${err.message}`);
  }
  if (!res.ok) throw new Error(`could not load ${url.pathname ?? url}: HTTP ${res.status}`);
  return res;
}

async function fetchBlob(url) {
  return (await fetchResponse(url)).blob();
}

// Byte counts of several files downloading at once, summed for one progress bar:
// onProgress({file, loaded, total, cached}), total 0 until every file's size is known.
class Tracker {
  constructor(names, onProgress) {
    this.count = names.length;
    this.onProgress = onProgress;
    this.loaded = new Map();
    this.sizes = new Map();
    this.refused = new Map(); // file -> why its body was cut off
  }
  // Reading `file`'s body failed with `err`: throws the reason it was refused, if it was.
  fail(file, err) {
    throw this.refused.get(file) ?? err;
  }
  report(file, cached = false) {
    let loaded = 0;
    for (const v of this.loaded.values()) loaded += v;
    let total = 0;
    for (const v of this.sizes.values()) total += v;
    this.onProgress({ file, loaded, total: this.sizes.size === this.count ? total : 0, cached });
  }
  // A response's body, counting bytes as they arrive; past `limit` bytes it fails (reading it
  // rejects with a bare "Failed to fetch": fail() gives the reason).
  async body(file, res, limit = Infinity) {
    this.sizes.set(file, Number(res.headers.get("content-length")) || 0);
    this.loaded.set(file, 0);
    this.report(file);
    let body = res.body;
    if (body) {
      let n = 0;
      const tracker = this;
      body = body.pipeThrough(
        new TransformStream({
          transform(chunk, ctl) {
            n += chunk.byteLength;
            if (n > limit) {
              const err = new Error(`${file}: more than ${fmtBytes(limit)} arrived; refused`);
              tracker.refused.set(file, err);
              ctl.error(err);
              return;
            }
            tracker.loaded.set(file, n);
            tracker.report(file);
            ctl.enqueue(chunk);
          },
        }),
      );
    }
    return new Response(body, { headers: { "content-type": "application/octet-stream" } });
  }
  done(file, blob, cached = false) {
    this.sizes.set(file, blob.size);
    this.loaded.set(file, blob.size);
    this.report(file, cached);
    return blob;
  }
}

// A response's declared size, checked before its body is read (a refused body is cancelled).
async function checkSize(res, check) {
  if (!check) return;
  try {
    await check(Number(res.headers.get("content-length")) || 0);
  } catch (err) {
    res.body?.cancel().catch(() => {});
    throw err;
  }
}

// A model's three files, config.json first: `check(configBlob, weightsBytes)` (optional) can
// refuse a model that cannot fit before its weights are downloaded (weightsBytes 0 while the
// size is not known yet). An oversized config.json is refused from its declared size, or once
// more than MAX_CONFIG_BYTES arrived. fetchOne(name, beforeBody, limit) -> Blob.
async function modelFiles(fetchOne, check) {
  const config = await fetchOne("config.json", checkConfigSize, MAX_CONFIG_BYTES);
  if (check) await check(config, 0);
  const [weights, tokenizer] = await Promise.all([
    fetchOne("model.safetensors", check && ((size) => check(config, size))),
    fetchOne("tokenizer.json"),
  ]);
  return { config, weights, tokenizer };
}

// A model from this site, with byte progress ({file, loaded, total}) and the fit check above.
export function fetchModelFiles(base, { onProgress = () => {}, check = null } = {}) {
  const tracker = new Tracker(MODEL_FILES, onProgress);
  const one = async (file, beforeBody, limit) => {
    const res = await fetchResponse(new URL(file, base));
    await checkSize(res, beforeBody);
    const body = await tracker.body(file, res, limit);
    return tracker.done(file, await body.blob().catch((err) => tracker.fail(file, err)));
  };
  return modelFiles(one, check);
}

export async function fetchBundleFiles(base) {
  const [manifest, features, dictionary] = await Promise.all(BUNDLE_FILES.map((f) => fetchBlob(new URL(f, base))));
  return { manifest, features, dictionary };
}

export function hubUrl(repo, file) {
  return `${HUB_ORIGIN}/${repo}/resolve/main/${file}`;
}

async function openHubCache() {
  // Cache Storage exists only in secure contexts (https, localhost); without it we just fetch.
  if (!("caches" in self)) return null;
  try {
    return await caches.open(HUB_CACHE);
  } catch {
    return null;
  }
}

// Downloads a CLIP repo's three files from the hub (or takes them from Cache Storage), with
// the fit check of modelFiles.
export async function hubModelFiles(repo, onProgress = () => {}, check = null) {
  const one = hubFetcher(repo, MODEL_FILES, "a CLIP repo", onProgress);
  return modelFiles(one, check);
}

// Downloads a result bundle's three files from a hub repo (e.g. one uploaded with
// `huggingface-cli upload owner/name bundle/`), or takes them from Cache Storage.
export async function hubBundleFiles(repo, onProgress = () => {}) {
  const one = hubFetcher(repo, BUNDLE_FILES, "a monoscope bundle", onProgress);
  const [manifest, features, dictionary] = await Promise.all(BUNDLE_FILES.map((f) => one(f)));
  return { manifest, features, dictionary };
}

// fetchOne(file, beforeBody) for a hub repo: from Cache Storage when an earlier download stored
// it, else downloaded with byte progress (onProgress as Tracker's) and stored. `what` names the
// kind of repo in errors.
function hubFetcher(repo, names, what, onProgress) {
  if (!validRepo(repo)) throw new Error(`"${repo}" is not a Hugging Face repo id (owner/name)`);
  const cacheReady = openHubCache();
  const tracker = new Tracker(names, onProgress);
  return async (file, beforeBody = null, limit = Infinity) => {
    const cache = await cacheReady;
    const url = hubUrl(repo, file);
    const hit = cache && (await cache.match(url));
    if (hit) {
      const blob = await hit.blob(); // disk-backed: nothing is read until the engine asks
      if (beforeBody) await beforeBody(blob.size);
      return tracker.done(file, blob, true);
    }
    let res;
    try {
      res = await fetch(url, { mode: "cors", credentials: "omit" });
    } catch (err) {
      throw new Error(`could not download ${file} from the hub: ${err.message} (offline, or blocked?)`);
    }
    if (res.status === 401 || res.status === 404) {
      throw new Error(`${repo}: ${file} not found on the hub (HTTP ${res.status}; private or not ${what}?)`);
    }
    if (!res.ok) throw new Error(`${repo}: downloading ${file} failed: HTTP ${res.status}`);
    await checkSize(res, beforeBody);
    const fresh = await tracker.body(file, res, limit);
    if (!cache) return tracker.done(file, await fresh.blob().catch((err) => tracker.fail(file, err)));
    // Stream straight into the cache (no second copy in memory), then read it back as a Blob.
    await cache.put(url, fresh).catch((err) => tracker.fail(file, err));
    const stored = await cache.match(url);
    if (!stored) throw new Error(`${file}: the browser did not keep the download`);
    return tracker.done(file, await stored.blob());
  };
}

// A path inside a hub repo ("" or "a/b"): segments of letters, digits, ".", "_" and "-".
const SUBPATH_RE = /^([A-Za-z0-9_][A-Za-z0-9._-]*\/)*[A-Za-z0-9_][A-Za-z0-9._-]*$/;

// Downloads a dictionary from a hub repo, optionally from a folder in it ("owner/name" or
// "owner/name/folder/..."): SAELens' cfg.json + sae_weights.safetensors, else monoscope's
// dict.json + dictionary.safetensors. Resolves to {config, weights, saelens} Blobs.
export async function hubDictionaryFiles(spec, onProgress = () => {}) {
  const parts = String(spec).trim().split("/");
  const repo = parts.slice(0, 2).join("/");
  const sub = parts.slice(2).join("/");
  if (!validRepo(repo)) throw new Error(`"${repo}" is not a Hugging Face repo id (owner/name)`);
  if (sub && (!SUBPATH_RE.test(sub) || sub.split("/").includes(".."))) throw new Error(`"${sub}" is not a folder in a repo`);
  const at = (f) => (sub ? `${sub}/${f}` : f);
  const attempt = async (names, saelens) => {
    const one = hubFetcher(repo, names.map(at), "a dictionary", onProgress);
    const [config, weights] = await Promise.all(names.map((n) => one(at(n))));
    return { config, weights, saelens };
  };
  try {
    return await attempt(["cfg.json", "sae_weights.safetensors"], true);
  } catch (err) {
    if (!/not found on the hub/.test(err.message)) throw err;
    return attempt(["dict.json", "dictionary.safetensors"], false);
  }
}

export async function forgetHubDownloads() {
  if (!("caches" in self)) return false;
  return caches.delete(HUB_CACHE);
}

// Sorts picked files into the named slots by file name; extension fallbacks let users pick
// files saved under other names (e.g. pytorch exports named clip.safetensors).
function classify(files, slots, what) {
  const out = {};
  const list = Array.from(files || []);
  for (const [slot, exact, fallback] of slots) {
    const f = list.find((x) => x.name === exact) || list.find((x) => fallback(x.name));
    if (f) out[slot] = f;
  }
  const missing = slots.filter(([slot]) => !out[slot]).map(([, exact]) => exact);
  if (missing.length) {
    const picked = list.map((f) => f.name).join(", ") || "nothing";
    throw new Error(`${what}: missing ${missing.join(", ")} (picked: ${picked})`);
  }
  return out;
}

export function classifyModelFiles(files) {
  return classify(
    files,
    [
      ["config", "config.json", (n) => /config\.json$/.test(n) && !/tokenizer|preprocessor/.test(n)],
      ["weights", "model.safetensors", (n) => n.endsWith(".safetensors")],
      ["tokenizer", "tokenizer.json", (n) => /tokenizer\.json$/.test(n)],
    ],
    "model files",
  );
}

export function classifyBundleFiles(files) {
  return classify(
    files,
    [
      ["manifest", "manifest.json", (n) => /manifest.*\.json$/.test(n)],
      ["features", "features.json", (n) => /features.*\.json$/.test(n)],
      ["dictionary", "dictionary.safetensors", (n) => n.endsWith(".safetensors")],
    ],
    "bundle files",
  );
}
