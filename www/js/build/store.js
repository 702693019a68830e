// Embedded rows of an unfinished build, kept in IndexedDB so a reload resumes where it
// stopped (issue 11). One record per data set, keyed by a fingerprint of the set (source
// name, pair count, image sizes); batches are appended as they finish.

const DB = "monoscope-build";
const STORE = "rows";

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error || new Error("IndexedDB is not available"));
  });
}

function tx(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const out = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(out.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error("IndexedDB transaction aborted"));
  });
}

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

// The stored batches of a set: [{ids, names, captions, image: Float32Array, text}].
export async function loadRows(key) {
  try {
    const db = await open();
    const record = await tx(db, "readonly", (s) => s.get(key));
    db.close();
    return record?.batches || [];
  } catch {
    return []; // private mode or no IndexedDB: no resume, the build still works
  }
}

export async function appendRows(key, batch) {
  try {
    const db = await open();
    const record = (await tx(db, "readonly", (s) => s.get(key))) || { batches: [] };
    record.batches.push(batch);
    await tx(db, "readwrite", (s) => s.put(record, key));
    db.close();
  } catch {
    // Not stored: a reload starts this set over.
  }
}

export async function forgetRows(key) {
  try {
    const db = await open();
    await tx(db, "readwrite", (s) => s.delete(key));
    db.close();
  } catch {
    // nothing stored
  }
}
