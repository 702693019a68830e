// What a model or bundle choice means as files to load: {label, param, files: Promise<blobs>}.
// Built-in and same-site models are fetched from the site; hub models are downloaded (with
// the progress bar under the hub form) into Cache Storage by js/sources.js.

import { $, state, runtime } from "./state.js";
import { fieldError, showLoadProgress } from "./status.js";
import * as sources from "../sources.js";
import { fmtBytes } from "../dom.js";
import { checkConfigSize } from "../modelconfig.js";

// Refuses a model that cannot fit the page's memory, from its config.json and weights size,
// before the weights are downloaded or read: first the page's size check of config.json,
// then the engine's `plan` (which validates every number).
async function fitCheck(config, weightsBytes) {
  checkConfigSize(config.size);
  let plan;
  try {
    plan = await runtime.engine.plan(config, weightsBytes);
  } catch (err) {
    // The engine's config errors start "config: "; name the file.
    if (err.message?.startsWith("config: ")) err.message = `config.json: ${err.message.slice(8)}`;
    throw err;
  }
  if (weightsBytes > 0) state.loadProgress.plan = plan; // the tests compare it with the peak
  return plan;
}

function byteProgress({ file, loaded, total }) {
  showLoadProgress("bytes", loaded, total, file);
}

export function modelFromSpec(spec) {
  if (spec.kind === "hub") return hubModel(spec.repo);
  const files = sources.fetchModelFiles(spec.base, { onProgress: byteProgress, check: fitCheck });
  return { label: spec.id, param: spec.id, files };
}

// Files picked on this computer ({config, weights, tokenizer} Files), checked before reading.
export function localModel(files) {
  const checked = fitCheck(files.config, files.weights.size).then(() => files);
  return { label: `local files (${files.weights.name})`, param: "", files: checked };
}

// The demo model's own bundle is its default, so the link does not need to name it.
export function bundleFromSpec(spec) {
  if (!spec) return null;
  if (spec.kind === "hub") return hubBundle(spec.repo);
  const param = spec.id === "demo" && state.modelParam === "demo" ? "" : spec.id;
  return { label: spec.id, param, files: sources.fetchBundleFiles(spec.base) };
}


function progressText(repo, { file, loaded, total, cached }) {
  const pct = total > 0 ? ` (${((100 * loaded) / total).toFixed(0)}%)` : "";
  const what = cached ? `${file} from the browser cache` : `downloading ${file}`;
  return `${repo}: ${what} · ${fmtBytes(loaded)}${total ? ` of ${fmtBytes(total)}` : ""}${pct}`;
}

function showProgress(repo, report, isModel) {
  if (isModel) byteProgress(report);
  const progress = $("hub-progress");
  if (report.total > 0) {
    progress.max = report.total;
    progress.value = report.loaded;
  }
  $("hub-status").textContent = progressText(repo, report);
}

export function hubModel(repo) {
  return hubDownload(repo, (r, onProgress) => sources.hubModelFiles(r, onProgress, fitCheck), true);
}

export function hubBundle(repo) {
  return hubDownload(repo, sources.hubBundleFiles);
}

// Downloads a hub repo's files with `fetcher`, showing progress under the hub form.
function hubDownload(repo, fetcher, isModel = false) {
  const progress = $("hub-progress");
  const status = $("hub-status");
  fieldError("hub-error", null);
  progress.hidden = false;
  progress.removeAttribute("value"); // indeterminate until the sizes are known
  status.textContent = `${repo}: contacting the hub…`;
  const files = fetcher(repo, (report) => showProgress(repo, report, isModel)).then(
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
