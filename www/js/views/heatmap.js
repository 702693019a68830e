// Patch heatmap: which image patches drive a feature. The engine greys out one patch of CLIP's
// patch grid at a time and reports how much every feature's activation drops; one run gives
// the maps of all features, so switching features afterwards is instant.

import { el, replaceKeepingFocus, classBadge, fmt, themeColour } from "../dom.js";
import { featureLabel, topActive, emptyNote } from "./common.js";

const SIDE = 320; // canvas pixels

export class HeatmapView {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("heatmap-view");
    this.maps = new Map(); // image key -> {status, done, total, rows, cols, drops, error}
    this.imageKey = null;
    this.bitmaps = new Map(); // image key -> Promise<ImageBitmap>
  }

  clear() {
    this.maps.clear();
  }

  forget(key) {
    this.maps.delete(key);
    this.bitmaps.delete(key);
  }

  chosenImage() {
    const ok = this.app.state.images.filter((x) => x.status === "ok");
    let item = ok.find((x) => x.key === this.imageKey);
    if (!item) item = ok[0] || null;
    this.imageKey = item ? item.key : null;
    return { item, ok };
  }

  // The feature to show: the chosen one, else the image's most active feature.
  featureFor(item) {
    const { state } = this.app;
    if (state.feature !== null && state.bundle?.byId.has(state.feature)) return { id: state.feature, chosen: true };
    const top = topActive(item.activations, 1);
    return top.length ? { id: top[0], chosen: false } : null;
  }

  render() {
    const { state } = this.app;
    if (!state.bundle) {
      replaceKeepingFocus(this.root, emptyNote("Load a bundle to see which image patches drive its features."));
      return;
    }
    const { item, ok } = this.chosenImage();
    if (!item) {
      replaceKeepingFocus(this.root, emptyNote("Needs an analysed image."));
      return;
    }
    const picker = el(
      "select",
      { id: "heatmap-image", dataset: { focusKey: "heatmap-image" }, onchange: (ev) => ((this.imageKey = ev.target.value), this.render()) },
      ok.map((x) => el("option", { value: x.key, text: x.name, selected: x.key === item.key })),
    );
    const map = this.maps.get(item.key);
    const running = map?.status === "running";
    const button = el("button", {
      type: "button",
      id: "heatmap-run",
      dataset: { focusKey: "heatmap-run" },
      disabled: running,
      text: map?.status === "done" ? "Compute again" : "Compute heatmap",
      onclick: () => this.compute(item),
    });
    const controls = el("div", { class: "inline-form" }, el("label", { for: "heatmap-image", text: "Image" }), picker, button);
    const parts = [controls];
    const feat = this.featureFor(item);
    if (feat) {
      const f = state.bundle.byId.get(feat.id);
      parts.push(
        el(
          "p",
          { class: "heatmap-feature" },
          feat.chosen ? "Feature " : "The image's most active feature ",
          classBadge(f?.class),
          ` #${feat.id} ${featureLabel(f)}`,
          f?.class === "TextD" ? el("span", { class: "hint", text: " (text-dominant: its map may be flat)" }) : null,
          feat.chosen ? null : el("span", { class: "hint", text: " · choose any feature above to see its map" }),
        ),
      );
    }
    if (running) {
      parts.push(el("progress", { max: String(map.total || 1), value: String(map.done || 0), aria: { label: "heatmap progress" } }), el("span", { class: "hint", text: ` ${map.done || 0} of ${map.total || "?"} passes` }));
    } else if (map?.status === "error") {
      parts.push(el("p", { class: "error", role: "alert", text: map.error }));
    } else if (map?.status === "done" && feat) {
      parts.push(this.drawing(item, map, feat.id));
    } else if (!map) {
      parts.push(el("p", { class: "hint", text: "Greys out each patch of the model's patch grid in turn (one forward pass each) and measures how much every feature drops." }));
    }
    replaceKeepingFocus(this.root, ...parts);
    // A compact widget asked for the heatmap: compute it without a click.
    if (!map && state.embed && state.panels.includes("heatmap")) this.compute(item);
  }

  async compute(item) {
    const entry = { status: "running", done: 0, total: 0 };
    this.maps.set(item.key, entry);
    this.render();
    try {
      const r = await this.app.heatmap(item.bytes, (done, total) => {
        entry.done = done;
        entry.total = total;
        const bar = this.root.querySelector("progress");
        if (bar && this.imageKey === item.key) {
          bar.max = total;
          bar.value = done;
        }
      });
      if (this.maps.get(item.key) !== entry) return; // model or bundle changed meanwhile
      Object.assign(entry, { status: "done", rows: r.rows, cols: r.cols, drops: r.drops });
    } catch (err) {
      if (this.maps.get(item.key) !== entry) return;
      Object.assign(entry, { status: "error", error: err.message || String(err) });
    }
    this.render();
  }

  bitmap(item) {
    if (!this.bitmaps.has(item.key)) this.bitmaps.set(item.key, createImageBitmap(item.blob));
    return this.bitmaps.get(item.key);
  }

  drawing(item, map, k) {
    const { rows, cols, drops } = map;
    const K = drops.length / (rows * cols);
    const vals = new Float32Array(rows * cols);
    let maxAbs = 0;
    for (let p = 0; p < rows * cols; p++) {
      vals[p] = drops[p * K + k];
      maxAbs = Math.max(maxAbs, Math.abs(vals[p]));
    }
    const order = Array.from(vals.keys()).sort((a, b) => vals[b] - vals[a]);
    const top = order.slice(0, 3).filter((p) => vals[p] > 0);
    const summary = top.length
      ? `Strongest patches for feature ${k}: ${top.map((p) => `row ${Math.floor(p / cols) + 1}, column ${(p % cols) + 1} (drop ${fmt(vals[p])})`).join("; ")}.`
      : `No patch lowers feature ${k} when hidden.`;
    const canvas = el("canvas", { id: "heatmap-canvas", width: String(SIDE), height: String(SIDE), role: "img", aria: { label: summary }, dataset: { rows: String(rows), cols: String(cols), feature: String(k) } });
    const pos = themeColour("--heat-pos", "#e03131");
    const neg = themeColour("--heat-neg", "#1971c2");
    this.bitmap(item).then(
      (bmp) => {
        const ctx = canvas.getContext("2d");
        // CLIP resizes the short side and centre-crops: draw the same square.
        const s = Math.min(bmp.width, bmp.height);
        ctx.imageSmoothingEnabled = bmp.width >= SIDE;
        ctx.drawImage(bmp, (bmp.width - s) / 2, (bmp.height - s) / 2, s, s, 0, 0, SIDE, SIDE);
        const w = SIDE / cols;
        const h = SIDE / rows;
        for (let p = 0; p < rows * cols; p++) {
          const v = vals[p];
          if (!maxAbs || v === 0) continue;
          ctx.globalAlpha = Math.min(0.8, (0.8 * Math.abs(v)) / maxAbs);
          ctx.fillStyle = v > 0 ? pos : neg;
          ctx.fillRect((p % cols) * w, Math.floor(p / cols) * h, w, h);
        }
        ctx.globalAlpha = 0.35;
        ctx.strokeStyle = "#000";
        for (let i = 1; i < cols; i++) ctx.strokeRect(i * w, 0, 0, SIDE);
        for (let j = 1; j < rows; j++) ctx.strokeRect(0, j * h, SIDE, 0);
        // Outline the strongest patches too: the fill alone can vanish on same-coloured objects.
        ctx.globalAlpha = 1;
        ctx.lineWidth = 3;
        ctx.strokeStyle = pos;
        for (const p of top) ctx.strokeRect((p % cols) * w + 1.5, Math.floor(p / cols) * h + 1.5, w - 3, h - 3);
        ctx.lineWidth = 1;
        canvas.dataset.drawn = "1";
      },
      () => {
        canvas.replaceWith(el("p", { class: "error", text: "the browser cannot draw this image file" }));
      },
    );
    return el(
      "figure",
      { class: "heatmap" },
      canvas,
      el(
        "figcaption",
        {},
        el("span", { class: "swatch swatch-pos" }),
        " hiding the patch lowers the feature (the patch drives it) · ",
        el("span", { class: "swatch swatch-neg" }),
        " hiding it raises the feature · outlined: the strongest patches",
        el("br"),
        summary,
        ` Patch grid ${rows}×${cols}; largest change ${fmt(maxAbs)}.`,
      ),
    );
  }
}
