// Embedded rows of an unfinished build, kept in IndexedDB so a reload resumes where it
// stopped (issue 11), keyed by a fingerprint of the set (model, source name, pair count,
// image sizes); batches are stored as they finish.

import { idbStore } from "./idb.js";

// Records keyed "SETKEY#NNNNNN", one per batch, so a batch is one small write (not a rewrite
// of everything stored so far) and a set's batches come back in order.
const run = idbStore("monoscope-build", "rows");
const batchKey = (key, index) => `${key}#${String(index).padStart(6, "0")}`;
const setRange = (key) => IDBKeyRange.bound(`${key}#`, `${key}#\uffff`);

// A fingerprint of a set of pairs and the model that embeds them.
export function setKey(model, source, pairs) {
  let h = 0x811c9dc5;
  const mix = (s) => {
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  };
  mix(model);
  mix(source);
  for (const p of pairs) mix(`${p.id}:${p.name}:${p.blob.size};`);
  return `${model}|${source}|${pairs.length}|${h.toString(16)}`;
}

// The stored batches of a set, in the order they were made: [{ids, names, captions, image:
// Float32Array, text}].
export async function loadRows(key) {
  try {
    return (await run("readonly", (s) => s.getAll(setRange(key)))) || [];
  } catch {
    return []; // private mode or no IndexedDB: no resume, the build still works
  }
}

// Stores batch number `index` of a set.
export async function appendRows(key, index, batch) {
  try {
    await run("readwrite", (s) => s.put(batch, batchKey(key, index)));
  } catch {
    // Not stored: a reload embeds this batch again.
  }
}

export async function forgetRows(key) {
  try {
    await run("readwrite", (s) => s.delete(setRange(key)));
  } catch {
    // nothing stored
  }
}
