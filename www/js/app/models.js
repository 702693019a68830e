// What a model or bundle choice means as files to load: {label, param, files: Promise<blobs>}.
// Built-in and same-site models are fetched from the site; hub models are downloaded (with
// the progress bar under the hub form) into Cache Storage by js/sources.js.

import { $, state } from "./state.js";
import { fieldError } from "./status.js";
import * as sources from "../sources.js";

export function modelFromSpec(spec) {
  if (spec.kind === "hub") return hubModel(spec.repo);
  return { label: spec.id, param: spec.id, files: sources.fetchModelFiles(spec.base) };
}

// The demo model's own bundle is its default, so the link does not need to name it.
export function bundleFromSpec(spec) {
  if (!spec) return null;
  if (spec.kind === "hub") return hubBundle(spec.repo);
  const param = spec.id === "demo" && state.modelParam === "demo" ? "" : spec.id;
  return { label: spec.id, param, files: sources.fetchBundleFiles(spec.base) };
}

function fmtMB(n) {
  return `${(n / 1e6).toFixed(1)} MB`;
}

function progressText(repo, { file, loaded, total, cached }) {
  const pct = total > 0 ? ` (${((100 * loaded) / total).toFixed(0)}%)` : "";
  const what = cached ? `${file} from the browser cache` : `downloading ${file}`;
  return `${repo}: ${what} · ${fmtMB(loaded)}${total ? ` of ${fmtMB(total)}` : ""}${pct}`;
}

function showProgress(repo, report) {
  const progress = $("hub-progress");
  if (report.total > 0) {
    progress.max = report.total;
    progress.value = report.loaded;
  }
  $("hub-status").textContent = progressText(repo, report);
}

export function hubModel(repo) {
  return hubDownload(repo, sources.hubModelFiles);
}

export function hubBundle(repo) {
  return hubDownload(repo, sources.hubBundleFiles);
}

// Downloads a hub repo's files with `fetcher`, showing progress under the hub form.
function hubDownload(repo, fetcher) {
  const progress = $("hub-progress");
  const status = $("hub-status");
  fieldError("hub-error", null);
  progress.hidden = false;
  progress.removeAttribute("value"); // indeterminate until the sizes are known
  status.textContent = `${repo}: contacting the hub…`;
  const files = fetcher(repo, (report) => showProgress(repo, report)).then(
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
