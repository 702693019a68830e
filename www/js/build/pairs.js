// Image-caption pairs from files the user picked (a folder, several files, or a webdataset
// .tar shard), with the same rules as the native readers (src/io/captions/folder.rs and
// tar.rs): a folder pairs each image with the same-name .txt file, in file-name order, ids
// from 1; a shard groups members KEY.EXT by key (image + txt) in archive order. Captions lose
// trailing newlines. Entries without a caption or image are reported with the reason and
// skipped. Every pair is {id, name, caption, blob}; nothing is read into memory but captions.

export const IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "jpe"];
const MAX_CAPTION_BYTES = 1 << 20; // as tar.rs's MAX_READ_MEMBER_BYTES

export function isImage(name) {
  const dot = name.lastIndexOf(".");
  return dot >= 0 && IMAGE_EXTENSIONS.includes(name.slice(dot + 1).toLowerCase());
}

function trimCaption(text) {
  return text.replace(/[\r\n]+$/, "");
}

async function readCaption(blob, what) {
  if (blob.size > MAX_CAPTION_BYTES) throw new Error(`${what}: ${blob.size} bytes is too long for a caption`);
  const bytes = new Uint8Array(await blob.arrayBuffer());
  try {
    return trimCaption(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new Error(`${what} is not UTF-8`);
  }
}

// Folder layout: the picked files' names (their last path component), images paired with
// the same-stem .txt. Returns {pairs, skipped: [reason]}.
export async function folderPairs(files) {
  const byName = new Map();
  for (const f of files) byName.set(f.name, f);
  const names = [...byName.keys()].filter(isImage).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const pairs = [];
  const skipped = [];
  for (const [i, name] of names.entries()) {
    const stem = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : name;
    const txt = byName.get(`${stem}.txt`);
    if (!txt) {
      skipped.push(`${name}: no ${stem}.txt caption`);
      continue;
    }
    try {
      pairs.push({ id: i + 1, name, caption: await readCaption(txt, `${stem}.txt`), blob: byName.get(name) });
    } catch (err) {
      skipped.push(err.message);
    }
  }
  return { pairs, skipped };
}

function octal(bytes) {
  const s = new TextDecoder().decode(bytes).replace(/[\0 ]+$/g, "").replace(/^[\0 ]+/g, "");
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) return null;
  return parseInt(s, 8);
}

function cString(bytes) {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end >= 0 ? bytes.subarray(0, end) : bytes);
}

// The members of a tar Blob: [{name, offset, size}] and the damage that ended the walk (or
// null). Reads only the 512-byte headers.
export async function tarMembers(blob) {
  const members = [];
  let pos = 0;
  while (pos + 512 <= blob.size) {
    const h = new Uint8Array(await blob.slice(pos, pos + 512).arrayBuffer());
    if (h.every((b) => b === 0)) return { members, damage: null };
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (octal(h.subarray(148, 156)) !== sum) return { members, damage: `at byte ${pos}: a tar header's checksum is wrong` };
    const size = octal(h.subarray(124, 136));
    if (size === null) return { members, damage: `at byte ${pos}: bad tar size field` };
    let name = cString(h.subarray(0, 100));
    if (cString(h.subarray(257, 262)) === "ustar") {
      const prefix = cString(h.subarray(345, 500));
      if (prefix) name = `${prefix}/${name}`;
    }
    const data = pos + 512;
    const padded = Math.ceil(size / 512) * 512;
    if (data + size > blob.size) return { members, damage: `${name}: the shard is truncated` };
    if (h[156] === 0x30 || h[156] === 0) members.push({ name, offset: data, size });
    pos = data + padded;
  }
  return { members, damage: null };
}

// A webdataset shard: members grouped by key (the name up to the first dot of its last path
// component), in archive order; ids number the keys from 1.
export async function tarPairs(blob) {
  const { members, damage } = await tarMembers(blob);
  const keys = new Map();
  for (const m of members) {
    const slash = m.name.lastIndexOf("/");
    const file = m.name.slice(slash + 1);
    const dot = file.indexOf(".");
    if (dot < 0) continue;
    const key = (slash >= 0 ? m.name.slice(0, slash + 1) : "") + file.slice(0, dot);
    const ext = file.slice(dot + 1).toLowerCase();
    if (!keys.has(key)) keys.set(key, { id: keys.size + 1, image: null, txt: null });
    const slot = keys.get(key);
    if (ext === "txt") slot.txt = m;
    else if (isImage(m.name) && !slot.image) slot.image = m;
  }
  const pairs = [];
  const skipped = [];
  for (const [key, slot] of keys) {
    if (!slot.image) {
      skipped.push(`${key}: no image member`);
      continue;
    }
    if (!slot.txt) {
      skipped.push(`${key}: no .txt caption`);
      continue;
    }
    try {
      const caption = await readCaption(blob.slice(slot.txt.offset, slot.txt.offset + slot.txt.size), `${key}.txt`);
      const image = blob.slice(slot.image.offset, slot.image.offset + slot.image.size);
      pairs.push({ id: slot.id, name: slot.image.name, caption, blob: image });
    } catch (err) {
      skipped.push(err.message);
    }
  }
  if (damage) skipped.push(damage);
  return { pairs, skipped };
}

export const LIST_EXTENSIONS = ["tsv", "csv", "json"];

// A caption list (TSV, CSV or COCO JSON) and the images it names among the picked files:
// parse(name, blob) -> {pairs: [[id, image, caption]], skipped} (the engine's reader); an
// image path matches a picked file with the same relative path, or else the same name.
export async function listPairs(list, files, parse) {
  const parsed = await parse(list.name, list);
  const byPath = new Map();
  const byName = new Map();
  for (const f of files) {
    // A folder pick (or drop) names files "folder/sub/x.png"; the list's paths are relative
    // to the folder.
    const rel = f.relPath || f.webkitRelativePath;
    if (rel) byPath.set(rel.split("/").slice(1).join("/"), f);
    if (!byName.has(f.name)) byName.set(f.name, f);
  }
  const pairs = [];
  const skipped = parsed.skipped.map(([id, why]) => `${list.name}:${id}: ${why}`);
  for (const [id, image, caption] of parsed.pairs) {
    const clean = image.replace(/^\.\//, "");
    const blob = byPath.get(clean) || byName.get(clean.split("/").pop());
    if (blob) pairs.push({ id, name: clean, caption, blob });
    else skipped.push(`${list.name}:${id}: ${image} is not among the picked files`);
  }
  return { pairs, skipped };
}

// Pairs from any pick: a .tar among the files wins (one shard), then a caption list (.tsv,
// .csv, COCO .json) with its images, else the folder layout. parse: see listPairs.
export async function pairsFromFiles(fileList, parse) {
  const files = Array.from(fileList || []);
  const tar = files.find((f) => f.name.toLowerCase().endsWith(".tar"));
  if (tar) return { source: tar.name, ...(await tarPairs(tar)) };
  const list = files.find((f) => LIST_EXTENSIONS.includes(f.name.split(".").pop().toLowerCase()));
  if (list) return { source: list.name, ...(await listPairs(list, files, parse)) };
  const dir = (files[0]?.relPath || files[0]?.webkitRelativePath)?.split("/")[0];
  return { source: dir || `${files.length} files`, ...(await folderPairs(files)) };
}

function entryFiles(entry, out) {
  if (entry.isFile) {
    return new Promise((resolve) =>
      entry.file(
        (f) => {
          // The path inside the dropped folder, as a folder pick's webkitRelativePath.
          Object.defineProperty(f, "relPath", { value: entry.fullPath.replace(/^\//, "") });
          out.push(f);
          resolve();
        },
        () => resolve(), // unreadable: left out, like a file the picker cannot open
      ),
    );
  }
  if (!entry.isDirectory) return Promise.resolve();
  const reader = entry.createReader();
  const all = [];
  return new Promise((resolve) => {
    const more = () =>
      reader.readEntries(
        (batch) => {
          if (!batch.length) {
            Promise.all(all.map((e) => entryFiles(e, out))).then(resolve);
            return;
          }
          all.push(...batch);
          more(); // readEntries returns at most ~100 entries per call
        },
        () => resolve(),
      );
    more();
  });
}

// The files of a drop: folders are walked (files keep their path inside the folder); a drop
// without entries (plain files) gives its file list.
export async function droppedFiles(dataTransfer) {
  const entries = Array.from(dataTransfer.items || [])
    .map((i) => (i.kind === "file" && i.webkitGetAsEntry ? i.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return Array.from(dataTransfer.files || []);
  const out = [];
  for (const e of entries) await entryFiles(e, out);
  return out;
}
