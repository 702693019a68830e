// The page state that lives in the URL (shareable links, widget/iframe attributes):
//   model    demo | tiny-clip | a same-site directory | hf:<owner>/<name>
//   bundle   none | demo | a same-site directory (default: the demo model's bundle)
//   prompt   repeatable, or several separated by "|"
//   image    repeatable same-site image URLs
//   feature  a feature id
//   panels   comma list of inputs,features,similarity,dictionary,feature,heatmap,probe,attack,control,build
//   build    1 = also show "Build a bundle" (hidden by default)
//   backend  auto | webgpu | cpu
//   engines  1-8: engine workers sharing each batch on the CPU backend, a single image's pass
//            cut between them (default 1; each one holds its own copy of the model)
//   wasm     auto | relaxed | simd128: which build of the wasm the engine workers load (default
//            auto: the relaxed-SIMD build where the browser has relaxed SIMD; www/worker.js)
//   embed    1 = compact widget mode (only the requested panels)

export const PANELS = ["inputs", "features", "similarity", "dictionary", "feature", "heatmap", "probe", "attack", "control", "build"];
// Shown without a `panels` parameter: all but "Build a bundle", which `build=1` adds.
export const DEFAULT_PANELS = PANELS.filter((p) => p !== "build");
export const EMBED_DEFAULT_PANELS = ["features"];
export const BACKENDS = ["auto", "webgpu", "cpu"];
export const WASM_BUILDS = ["auto", "relaxed", "simd128"];
// The most engine workers a page may start (`engines`): each holds a copy of the model.
export const MAX_ENGINES = 8;

function splitList(values, sep) {
  return values
    .flatMap((v) => v.split(sep))
    .map((v) => v.trim())
    .filter(Boolean);
}

// Parses location.search. Returns the values and a list of problems (shown to the user; a bad
// parameter never stops the page).
export function readParams(search) {
  const q = new URLSearchParams(search);
  const problems = [];
  const yes = (name) => ["1", "true", "yes"].includes((q.get(name) || "").toLowerCase());
  const embed = yes("embed");
  const backend = (q.get("backend") || "auto").trim().toLowerCase();
  let panels = null;
  if (q.has("panels")) {
    const asked = splitList(q.getAll("panels"), ",").map((p) => p.toLowerCase());
    const unknown = asked.filter((p) => !PANELS.includes(p));
    if (unknown.length) problems.push(`unknown panel(s) ${unknown.join(", ")}; known: ${PANELS.join(", ")}`);
    panels = PANELS.filter((p) => asked.includes(p));
  }
  let feature = null;
  if (q.has("feature") && q.get("feature") !== "") {
    const f = Number(q.get("feature"));
    if (Number.isInteger(f) && f >= 0) feature = f;
    else problems.push(`feature must be a feature id (a whole number), not "${q.get("feature")}"`);
  }
  let engines = 1;
  if (q.has("engines")) {
    const n = Number(q.get("engines"));
    if (Number.isInteger(n) && n >= 1 && n <= MAX_ENGINES) engines = n;
    else problems.push(`engines must be a whole number from 1 to ${MAX_ENGINES}, not "${q.get("engines")}"`);
  }
  let wasm = (q.get("wasm") || "auto").trim().toLowerCase();
  if (!WASM_BUILDS.includes(wasm)) {
    problems.push(`wasm must be one of ${WASM_BUILDS.join(", ")}, not "${q.get("wasm")}"; using auto`);
    wasm = "auto";
  }
  // A link that names inputs replaces the demo inputs entirely.
  const hasInputs = q.has("prompt") || q.has("image");
  return {
    embed,
    build: yes("build"),
    backend,
    engines,
    wasm,
    model: q.get("model") || "",
    bundle: q.get("bundle") ?? "",
    prompts: hasInputs ? splitList(q.getAll("prompt"), "|") : null,
    images: hasInputs ? splitList(q.getAll("image"), "|") : null,
    feature,
    panels,
    problems,
  };
}

// The query string for a state (only what differs from the defaults).
export function buildSearch({ model, bundle, prompts, images, feature, panels, backend, engines, wasm, embed, build }) {
  const q = new URLSearchParams();
  if (model && model !== "demo") q.set("model", model);
  if (bundle) q.set("bundle", bundle);
  for (const p of prompts || []) q.append("prompt", p);
  for (const i of images || []) q.append("image", i);
  if (feature !== null && feature !== undefined) q.set("feature", String(feature));
  if (panels && panels.length) q.set("panels", panels.join(","));
  if (backend && backend !== "auto") q.set("backend", backend);
  if (engines && engines > 1) q.set("engines", String(engines));
  if (wasm && wasm !== "auto") q.set("wasm", wasm);
  if (embed) q.set("embed", "1");
  if (build) q.set("build", "1");
  const s = q.toString();
  return s ? `?${s}` : "";
}
