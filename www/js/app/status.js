// What the page says about itself: the status line, body[data-state] (which the tests and
// the widget wait on), the page-wide error, notes, per-control error slots and the header's
// model / backend / bundle.

import { $, state, allInputs } from "./state.js";
import { fmtBytes, oneLine } from "../dom.js";

// The longest message an error slot shows (a backstop: messages are composed shorter).
const MAX_MESSAGE = 600;

export function setStatus(text) {
  $("status").textContent = text;
}

export function showGlobalError(message) {
  message = oneLine(message, MAX_MESSAGE);
  state.error = message;
  $("error").textContent = message;
  $("error").hidden = false;
  updateBodyState();
}

export function clearGlobalError() {
  state.error = null;
  $("error").textContent = "";
  $("error").hidden = true;
}

export function showNotes(lines) {
  $("notes").textContent = lines.join(" · ");
  $("notes").hidden = lines.length === 0;
}

// An error next to the control that caused it; null hides the slot.
export function fieldError(id, message) {
  const node = $(id);
  node.textContent = message ? oneLine(message, MAX_MESSAGE) : "";
  node.hidden = !message;
}

const WORKING = new Set(["pending", "busy", "reading"]);

function pageState() {
  const status = state.model.status;
  if (state.error && status !== "ready") return "error";
  if (status === "loading" || status === "idle") return "loading";
  if (status === "error") return "error";
  if (allInputs().some((x) => WORKING.has(x.status))) return "busy";
  return "ready";
}

// Keys of the inputs queued since the page was last idle, for "analysing 3 of 50…" (the
// first input of the batch in flight; many dropped images show how far the queue is).
const batch = new Set();

function queueProgress() {
  const working = allInputs().filter((x) => WORKING.has(x.status));
  for (const x of working) batch.add(x.key);
  const done = batch.size - working.length;
  return `analysing ${Math.min(done + 1, batch.size)} of ${batch.size}…`;
}

export function updateBodyState() {
  const s = pageState();
  document.body.dataset.state = s;
  if (s !== "busy") batch.clear();
  if (s === "ready") setStatus(state.images.length + state.prompts.length ? "ready" : "ready: add an image or a prompt");
  else if (s === "busy") setStatus(queueProgress());
}

export function renderSourceStatus() {
  const m = state.model;
  $("model").textContent = m.label;
  // On the CPU backend the wasm build matters (its GEMM kernel): "cpu (relaxed SIMD)".
  const build = m.backend === "cpu" && m.wasm ? ` (${m.wasm})` : "";
  $("backend").textContent = m.backend ? `${m.backend}${build}` : m.status === "loading" ? "starting…" : "–";
  $("bundle").textContent = state.bundle ? state.bundle.label : "none";
}


// A model's load progress under the header: phase "bytes" (files fetched; `what` names the
// file) then "tensors" (parameters placed on the device). state.loadProgress keeps the last
// report of each phase for the tests.
export function showLoadProgress(phase, done, total, what = "") {
  state.loadProgress[phase] = { done, total };
  const bar = $("load-progress");
  bar.hidden = false;
  if (total > 0) {
    bar.max = total;
    bar.value = done;
  } else {
    bar.removeAttribute("value");
  }
  const pct = total > 0 ? ` (${((100 * done) / total).toFixed(0)}%)` : "";
  setStatus(
    phase === "bytes"
      ? `fetching ${what}: ${fmtBytes(done)}${total ? ` of ${fmtBytes(total)}` : ""}${pct}`
      : `placing tensors: ${done} of ${total}${pct}`,
  );
}

export function hideLoadProgress() {
  $("load-progress").hidden = true;
}
