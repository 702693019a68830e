// The inputs: prompts and images (files, drops, same-site URLs). Each change re-renders,
// updates the URL and feeds the analysis queue. A file that cannot be read fails on its own
// card; the other inputs keep their results.

import { state, views, newKey, syncUrl } from "./state.js";
import { updateBodyState } from "./status.js";
import { renderSoon } from "./render.js";
import { pump } from "./queue.js";
import * as sources from "../sources.js";

export function addPrompt(text) {
  const t = String(text).trim();
  if (!t) return false;
  const item = { kind: "prompt", key: newKey("p"), text: t, status: "pending", error: null };
  state.prompts.push(item);
  if (!state.pair && state.images.length) state.pair = { image: state.images[0].key, prompt: item.key };
  afterInputsChanged();
  return true;
}

// An edited prompt is analysed again; emptied, it goes away.
export function editPrompt(item, text) {
  const t = String(text).trim();
  if (!t) {
    removeInput(item);
    return;
  }
  if (t === item.text) return;
  Object.assign(item, { text: t, status: "pending", error: null, embedding: null, activations: null });
  afterInputsChanged();
}

function newImage(name, url) {
  return { kind: "image", key: newKey("i"), name, url, status: "reading", error: null, bytes: null, blob: null };
}

async function readImage(item, blobPromise) {
  try {
    const blob = await blobPromise;
    item.blob = blob;
    item.bytes = await blob.arrayBuffer();
    item.size = blob.size;
    item.status = "pending";
  } catch (err) {
    Object.assign(item, { status: "error", error: err.message || String(err), readError: true });
  }
}

// Adds an image from a Blob or File. Its card shows "reading…" until the bytes are in.
async function addImageBlob(item, blobPromise) {
  state.images.push(item);
  if (!state.pair && state.prompts.length) state.pair = { image: item.key, prompt: state.prompts[0].key };
  views.inputs.render();
  updateBodyState();
  await readImage(item, blobPromise);
  if (!state.images.includes(item)) return; // removed while reading
  afterInputsChanged();
}

export function addImageFiles(files) {
  for (const file of Array.from(files || [])) addImageBlob(newImage(file.name, null), Promise.resolve(file));
}

async function fetchImage(url) {
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`could not load ${url.pathname}: HTTP ${res.status}`);
  return res.blob();
}

// Same-site URLs only: another site's URL fails on its card and is never requested.
export function addImageUrl(value) {
  const name = String(value).split("/").pop() || String(value);
  const item = newImage(name, value);
  let url;
  try {
    url = sources.sameSiteUrl(value, "image URL");
  } catch (err) {
    item.url = null; // never put a rejected URL back into the link
    state.images.push(item);
    Object.assign(item, { status: "error", error: err.message, readError: true });
    afterInputsChanged();
    return;
  }
  addImageBlob(item, fetchImage(url));
}

export function removeInput(item) {
  state.images = state.images.filter((x) => x !== item);
  state.prompts = state.prompts.filter((x) => x !== item);
  if (state.pair && (state.pair.image === item.key || state.pair.prompt === item.key)) state.pair = null;
  if (item.thumb) URL.revokeObjectURL(item.thumb);
  views.heatmap.forget(item.key);
  afterInputsChanged();
}

function afterInputsChanged() {
  if (!state.pair && state.images.length && state.prompts.length) {
    state.pair = { image: state.images[0].key, prompt: state.prompts[0].key };
  }
  renderSoon({ inputs: true }); // at once when idle: pump() flushes it
  updateBodyState();
  syncUrl();
  pump();
}
