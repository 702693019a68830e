// Bundles built in this browser (issue 11), kept in IndexedDB with thumbnails of their top
// example images (the user's own pictures, never uploaded), and listed under "Model and
// bundle" for reuse.

import { idbStore } from "./idb.js";

const run = idbStore("monoscope-bundles", "bundles", { keyPath: "id", autoIncrement: true });
export const THUMB_SIDE = 96;

// record: {label, created, pairs, files: {manifest, features, dictionary} Blobs, thumbs: {id: Blob}}
export function saveBundle(record) {
  return run("readwrite", (s) => s.add(record));
}

export async function listBundles() {
  const all = await run("readonly", (s) => s.getAll());
  return all.map(({ id, label, created, pairs }) => ({ id, label, created, pairs }));
}

export function getBundle(id) {
  return run("readonly", (s) => s.get(id));
}

export function deleteBundle(id) {
  return run("readwrite", (s) => s.delete(id));
}

// A small PNG of an image Blob (null when the browser cannot decode it).
async function thumbnail(blob) {
  try {
    const bitmap = await createImageBitmap(blob);
    const scale = THUMB_SIDE / Math.max(bitmap.width, bitmap.height);
    const w = Math.max(1, Math.round(bitmap.width * scale));
    const h = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = new OffscreenCanvas(w, h);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, w, h);
    bitmap.close();
    return await canvas.convertToBlob({ type: "image/png" });
  } catch {
    return null;
  }
}

// Thumbnails of the pairs shown as top example images (the first `perFeature` of each
// feature): {id: Blob}, keyed by the pair's id, which features.json's examples record as `line`.
export async function exampleThumbs(featuresDoc, pairs, perFeature) {
  const byId = new Map(pairs.map((p) => [p.id, p]));
  const ids = new Set();
  for (const f of featuresDoc.features || []) {
    for (const [row] of (f.top_images || []).slice(0, perFeature)) {
      const line = featuresDoc.examples?.[String(row)]?.line;
      if (line !== undefined) ids.add(Number(line));
    }
  }
  const thumbs = {};
  for (const id of ids) {
    const p = byId.get(id);
    const t = p && (await thumbnail(p.blob));
    if (t) thumbs[id] = t;
  }
  return thumbs;
}

// {id: Blob} -> Map(id -> object URL) for the feature page.
export function thumbUrls(thumbs) {
  return new Map(Object.entries(thumbs || {}).map(([id, blob]) => [Number(id), URL.createObjectURL(blob)]));
}
