// The inputs panel: image cards (thumbnail, status, error, remove) and editable prompt rows.
// Cards are kept per input (keyed), so a status change never rebuilds a row the user is typing in.

import { el } from "../dom.js";

const STATUS_TEXT = {
  reading: "reading…",
  pending: "waiting…",
  busy: "analysing…",
  ok: "done",
  error: "failed",
};

export class InputsView {
  constructor(app) {
    this.app = app;
    this.imageList = document.getElementById("image-list");
    this.promptList = document.getElementById("prompt-list");
    this.cards = new Map(); // key -> {root, status, error, ...}
  }

  render() {
    const { state } = this.app;
    const keep = new Set([...state.images, ...state.prompts].map((x) => x.key));
    for (const key of this.cards.keys()) if (!keep.has(key)) this.cards.delete(key);
    // Re-append in state order; existing nodes move, they are not rebuilt.
    const active = document.activeElement;
    this.imageList.replaceChildren(...state.images.map((x) => this.card(x).root));
    this.promptList.replaceChildren(...state.prompts.map((x) => this.card(x).root));
    if (active && document.contains(active) && document.activeElement !== active) active.focus({ preventScroll: true });
    for (const x of [...state.images, ...state.prompts]) this.updateItem(x);
    if (!state.images.length) this.imageList.append(el("li", { class: "empty", text: "No images yet." }));
    if (!state.prompts.length) this.promptList.append(el("li", { class: "empty", text: "No prompts yet." }));
  }

  card(item) {
    let c = this.cards.get(item.key);
    if (!c) {
      c = item.kind === "image" ? this.imageCard(item) : this.promptRow(item);
      this.cards.set(item.key, c);
    }
    return c;
  }

  imageCard(item) {
    const thumb = el("img", { class: "thumb", alt: `thumbnail of ${item.name}`, hidden: true });
    thumb.addEventListener("load", () => (thumb.hidden = false));
    thumb.addEventListener("error", () => (thumb.hidden = true)); // corrupt files: no picture
    const placeholder = el("span", { class: "thumb placeholder", aria: { hidden: "true" }, text: "?" });
    thumb.addEventListener("load", () => (placeholder.hidden = true));
    const status = el("span", { class: "input-status", role: "status" });
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const remove = el("button", {
      type: "button",
      class: "icon-button",
      text: "Remove",
      aria: { label: `remove image ${item.name}` },
      dataset: { focusKey: `rm-${item.key}` },
      onclick: () => this.app.removeInput(item),
    });
    const root = el(
      "li",
      { class: "image-card", dataset: { key: item.key } },
      el("div", { class: "thumb-box" }, thumb, placeholder),
      el("div", { class: "card-body" }, el("span", { class: "input-name", text: item.name, title: item.name }), status, remove),
      error,
    );
    return { root, status, error, thumb, thumbFor: null };
  }

  promptRow(item) {
    const id = `prompt-${item.key}`;
    const input = el("input", { type: "text", id, value: item.text, maxlength: "2000", spellcheck: "false" });
    // Commit on Enter or when leaving the field, not on every key press (each edit re-runs CLIP).
    input.addEventListener("change", () => this.app.editPrompt(item, input.value));
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        this.app.editPrompt(item, input.value);
      }
    });
    const status = el("span", { class: "input-status", role: "status" });
    const note = el("span", { class: "hint", hidden: true, text: "truncated to the model's context" });
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const remove = el("button", {
      type: "button",
      class: "icon-button",
      text: "Remove",
      aria: { label: `remove prompt ${item.text}` },
      dataset: { focusKey: `rm-${item.key}` },
      onclick: () => this.app.removeInput(item),
    });
    const label = el("label", { for: id, class: "visually-hidden", text: "prompt" });
    const root = el(
      "li",
      { class: "prompt-row", dataset: { key: item.key } },
      el("div", { class: "prompt-line" }, label, input, status, remove),
      note,
      error,
    );
    return { root, status, error, input, note, remove };
  }

  updateItem(item) {
    const c = this.cards.get(item.key);
    if (!c) return;
    c.root.dataset.status = item.status;
    c.status.textContent = STATUS_TEXT[item.status] || item.status;
    c.error.textContent = item.error || "";
    c.error.hidden = !item.error;
    if (item.kind === "image") {
      if (item.blob && c.thumbFor !== item.blob) {
        if (item.thumb) URL.revokeObjectURL(item.thumb);
        item.thumb = URL.createObjectURL(item.blob);
        c.thumb.src = item.thumb;
        c.thumbFor = item.blob;
      }
    } else {
      if (document.activeElement !== c.input) c.input.value = item.text;
      c.note.hidden = !item.truncated;
      c.remove.setAttribute("aria-label", `remove prompt ${item.text}`);
    }
  }
}
