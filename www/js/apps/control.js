// Modality-specific control (SPEC §4.3): a prompt's features scaled per class, the residual
// kept. With the demo model the demo decoder draws the original and the edited embedding live;
// the edited embedding downloads as .safetensors or .npy.

import { el, replaceKeepingFocus, classBadge, fmt, errorBox } from "../dom.js";
import { rgbaCanvas, figure, fetchBlob, download } from "./common.js";

const CONTROL_DEBOUNCE_MS = 60; // slider drags send one request per pause, not per pixel
const CLASSES = ["ImgD", "TextD", "CrossD"];
const SHOWN_CHANGES = 8;
const INTRO =
  "Scale the prompt's features by class; the reconstruction residual is kept, so all scales at 1 give the original embedding (SPEC §4.3).";
const NO_DECODER =
  "No image decoder for this model: export the edited embedding for an unCLIP-style generator (see README).";

function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

// The features whose activation changed, largest change first: [id, before, after].
function changedFeatures(before, after) {
  const diff = [];
  for (let k = 0; k < before.length; k++) {
    if (before[k] !== after[k]) diff.push([k, before[k], after[k]]);
  }
  return diff.sort((a, b) => Math.abs(b[2] - b[1]) - Math.abs(a[2] - a[1]));
}

function fileStem(text) {
  return text.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "edited";
}

class ControlPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.sliders = {};
    this.values = {};
    this.timer = null;
    this.latest = 0; // only the newest request's answer is drawn
    this.last = null; // {embedding, text, scales}
    this.decoderFor = null; // the engine `ready` promise the decoder was loaded into
    this.prompt = el("input", { type: "text", value: "", maxlength: 1000, aria: { label: "prompt to edit" } });
    this.prompt.addEventListener("input", () => this.schedule());
    this.prompt.value = ctx.isDemo() ? "a red circle" : "a photo of a dog";
    this.exportSt = el("button", { type: "button", text: "Download .safetensors", disabled: true, onclick: () => this.doExport("safetensors") });
    this.exportNpy = el("button", { type: "button", text: "Download .npy", disabled: true, onclick: () => this.doExport("npy") });
    this.status = el("p", { class: "app-status", role: "status" });
    this.images = el("div", { class: "control-images" });
    this.changes = el("div", { class: "control-changes" });
    const reset = el("button", { type: "button", text: "Reset scales", onclick: () => this.reset() });
    root.replaceChildren(
      el("p", { class: "muted" }, INTRO),
      el("label", { class: "block" }, "Prompt ", this.prompt),
      el("div", { class: "sliders" }, CLASSES.map((c) => this.sliderRow(c))),
      el("div", { class: "app-actions" }, reset, this.exportSt, this.exportNpy),
      this.status,
      this.images,
      this.changes,
    );
  }

  sliderRow(c) {
    const input = el("input", { type: "range", min: 0, max: 3, step: 0.1, value: 1, aria: { label: `${c} scale` }, dataset: { cls: c } });
    const out = el("output", { text: "1.0" });
    input.addEventListener("input", () => {
      out.textContent = Number(input.value).toFixed(1);
      this.schedule();
    });
    this.sliders[c] = input;
    this.values[c] = out;
    return el("label", { class: "slider-row" }, classBadge(c), " ", input, " ×", out);
  }

  setSlider(c, v) {
    this.sliders[c].value = v;
    this.values[c].textContent = Number(v).toFixed(1);
  }

  reset() {
    for (const c of Object.keys(this.sliders)) this.setSlider(c, 1);
    this.schedule();
  }

  scales() {
    const s = this.sliders;
    return { class: [Number(s.ImgD.value), Number(s.TextD.value), Number(s.CrossD.value), 1], features: [] };
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.update(), CONTROL_DEBOUNCE_MS);
  }

  // The demo decoder, loaded once per engine (a restarted worker needs it again).
  async ensureDecoder() {
    if (!this.ctx.isDemo()) return;
    const ready = this.ctx.engineReady();
    if (this.decoderFor === ready) return;
    const base = new URL("demo/decoder/", this.ctx.assetBase);
    const [config, weights] = await Promise.all([fetchBlob(new URL("decoder.json", base)), fetchBlob(new URL("decoder.safetensors", base))]);
    await this.ctx.call("load_decoder", { config, weights });
    this.decoderFor = ready;
  }

  renderImages(r) {
    if (!r.image_after) {
      this.images.replaceChildren(el("p", { class: "muted", text: NO_DECODER }));
      return;
    }
    replaceKeepingFocus(
      this.images,
      figure(rgbaCanvas(r.image_before, r.side, "decoded from the original prompt"), "original"),
      figure(rgbaCanvas(r.image_after, r.side, "decoded from the edited prompt"), "edited"),
    );
  }

  changeItem([k, b, a]) {
    return el(
      "li",
      {},
      el("button", { type: "button", class: "link", text: `#${k}`, onclick: () => this.ctx.openFeature?.(k) }),
      " ",
      classBadge(this.ctx.featureClass(k)),
      ` ${fmt(b)} → ${fmt(a)}`,
    );
  }

  renderChanges(r, cosine) {
    const diff = changedFeatures(r.before, r.after);
    replaceKeepingFocus(
      this.changes,
      el("p", { text: `cosine(edited, original) = ${fmt(cosine, 4)} · ${diff.length} active feature(s) rescaled` }),
      el("ul", { class: "control-diff" }, diff.slice(0, SHOWN_CHANGES).map((d) => this.changeItem(d))),
    );
  }

  show(r, text, scales) {
    this.last = { embedding: r.embedding, text, scales };
    this.exportSt.disabled = false;
    this.exportNpy.disabled = false;
    const cosine = dot(r.embedding, r.original);
    this.ctx.result.control = { cosine, side: r.side ?? null, image_after: r.image_after ? Array.from(r.image_after) : null };
    this.renderImages(r);
    this.renderChanges(r, cosine);
    this.status.textContent = "";
  }

  async update() {
    const id = ++this.latest;
    const text = this.prompt.value;
    if (!text.trim()) {
      this.changes.replaceChildren(errorBox("type a prompt to edit"));
      return;
    }
    try {
      await this.ensureDecoder();
      const scales = this.scales();
      const r = await this.ctx.call("control", { text, scales });
      if (id !== this.latest) return;
      this.show(r, text, scales);
    } catch (err) {
      if (id !== this.latest) return;
      this.changes.replaceChildren(errorBox(err.message));
    }
  }

  async exportBytes(format) {
    const { embedding, text, scales } = this.last;
    if (format === "npy") return this.ctx.call("export_embedding", { embedding, format: "npy" });
    const metadata = JSON.stringify({ prompt: text, scales: JSON.stringify(scales) });
    return this.ctx.call("export_embedding", { embedding, format: "safetensors", metadata });
  }

  async doExport(format) {
    if (!this.last) return;
    try {
      const name = fileStem(this.last.text);
      const bytes = await this.exportBytes(format);
      download(bytes, `${name}.${format}`, "application/octet-stream");
    } catch (err) {
      this.status.textContent = err.message;
    }
  }
}

export function mountControl(root, ctx) {
  const panel = new ControlPanel(root, ctx);
  return {
    update: () => panel.update(),
    setScale: (c, v) => {
      panel.setSlider(c, v);
      return panel.update();
    },
  };
}
