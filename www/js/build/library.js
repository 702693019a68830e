// "Bundles built in this browser" under Model and bundle: pick one to use it again (with its
// example thumbnails) or delete it.

import { el } from "../dom.js";
import { listBundles, getBundle, deleteBundle, thumbUrls } from "./saved.js";

// root: an empty container. ctx: {useBundle(blobs, label, thumbs)}. Returns {refresh()}.
export function mountLibrary(root, ctx) {
  const select = el("select", { id: "saved-bundles" });
  const use = el("button", { type: "button", id: "saved-use", text: "Use" });
  const del = el("button", { type: "button", id: "saved-delete", class: "secondary", text: "Delete" });
  const note = el("p", { class: "hint", id: "saved-status", role: "status" });
  root.replaceChildren(el("label", { for: "saved-bundles", text: "Bundles built in this browser" }), select, use, del, note);

  async function refresh() {
    let list = [];
    try {
      list = await listBundles();
    } catch (err) {
      note.textContent = `not available: ${err.message}`;
    }
    select.replaceChildren(...list.map((b) => el("option", { value: String(b.id), text: `${b.label} · ${b.pairs} pairs · ${new Date(b.created).toLocaleString()}` })));
    const empty = list.length === 0;
    select.disabled = empty;
    use.disabled = empty;
    del.disabled = empty;
    if (empty) note.textContent = "None yet: build one with “Build a bundle from your own images…”.";
    else note.textContent = "";
  }

  use.addEventListener("click", async () => {
    const record = await getBundle(Number(select.value));
    if (!record) return refresh();
    note.textContent = `using ${record.label}`;
    await ctx.useBundle(record.files, record.label, thumbUrls(record.thumbs));
  });
  del.addEventListener("click", async () => {
    await deleteBundle(Number(select.value));
    await refresh();
  });
  refresh();
  return { refresh };
}
