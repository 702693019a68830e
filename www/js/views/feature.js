// One feature's page: MDS, class, support, EmbSim, labels, its top example images and texts
// from the bundle, and its activation on the current inputs.

import { el, replaceKeepingFocus, classBadge, fmt, bar } from "../dom.js";
import { featureLabel, inputTitle, emptyNote } from "./common.js";

const EXAMPLE_IMAGES = 8;
const EXAMPLE_TEXTS = 10;
const SCENE_RE = /^scene:\d+:\d+$/;

export class FeatureView {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("feature-view");
    this.title = document.getElementById("feature-title");
    this.scenes = new Map(); // scene name -> Promise<ImageData>
    this.sceneModel = null; // scenes are drawn by the loaded engine; a new model clears them
  }

  render() {
    const { state } = this.app;
    const b = state.bundle;
    if (!b) {
      this.title.textContent = "Feature";
      replaceKeepingFocus(this.root, emptyNote("Load a bundle to see its features."));
      return;
    }
    const f = state.feature !== null ? b.byId.get(state.feature) : null;
    if (!f) {
      this.title.textContent = "Feature";
      replaceKeepingFocus(this.root, emptyNote("Choose a feature in any list above (or search the dictionary)."));
      return;
    }
    this.title.replaceChildren(`Feature #${f.id} `, classBadge(f.class), el("span", { class: "title-label", text: ` ${featureLabel(f)}` }));

    const ids = b.features.map((x) => x.id);
    const at = ids.indexOf(f.id);
    const nav = el(
      "p",
      { class: "feature-nav" },
      el("button", { type: "button", class: "secondary", text: "← previous", disabled: at <= 0, dataset: { focusKey: "prev" }, onclick: () => this.app.selectFeature(ids[at - 1], { focus: false }) }),
      el("button", { type: "button", class: "secondary", text: "next →", disabled: at < 0 || at >= ids.length - 1, dataset: { focusKey: "next" }, onclick: () => this.app.selectFeature(ids[at + 1], { focus: false }) }),
    );

    const facts = el(
      "dl",
      { class: "facts feature-facts" },
      fact("MDS", `${fmt(f.mds, 3)}${f.mds === null ? " (too rare to score)" : ""}`),
      fact("class", String(f.class)),
      fact("support", `${f.support ?? "–"} pairs`),
      fact("EmbSim (images)", fmt(f.emb_sim_image, 3)),
      fact("EmbSim (texts)", fmt(f.emb_sim_text, 3)),
      fact("mean activation", `image ${fmt(f.mean_image, 4)} · text ${fmt(f.mean_text, 4)}`),
    );

    const labels = (f.labels || []).map((l) => (Array.isArray(l) ? l : [l, null]));
    const maxLabel = Math.max(0, ...labels.map((l) => Number(l[1]) || 0));
    const labelList = labels.length
      ? el(
          "ol",
          { class: "label-list" },
          labels.map(([text, act]) => el("li", {}, el("span", { class: "label-text", text: String(text) }), act !== null ? bar(act, maxLabel, `activation ${fmt(act)}`) : null, act !== null ? el("span", { class: "num", text: fmt(act) }) : null)),
        )
      : emptyNote("No auto-labels (no vocabulary entry activates this feature).");

    replaceKeepingFocus(
      this.root,
      nav,
      facts,
      el("h3", { text: "Auto-labels" }),
      labelList,
      el("h3", { text: "Top example images" }),
      this.exampleImages(f),
      el("h3", { text: "Top example texts" }),
      this.exampleTexts(f),
      el("h3", { text: "Activation on the current inputs" }),
      this.currentActivations(f),
    );
  }

  example(row) {
    return this.app.state.bundle.examples[String(row)] || null;
  }

  exampleImages(f) {
    const top = (f.top_images || []).slice(0, EXAMPLE_IMAGES);
    if (!top.length) return emptyNote("No image examples.");
    const max = Math.max(...top.map((t) => t[1]));
    return el(
      "ul",
      { class: "example-images" },
      top.map(([row, act]) => {
        const ex = this.example(row);
        const name = ex?.image ?? `row ${row}`;
        let picture;
        const thumb = ex && this.app.state.bundle.thumbs?.get(Number(ex.line));
        if (thumb) {
          // A bundle built in this page: thumbnails of the user's own images, kept locally.
          picture = el("img", { class: "example-thumb", src: thumb, alt: `example image ${name}` });
        } else if (SCENE_RE.test(name)) {
          // Demo-world examples are redrawn by the engine from their seed; no file is fetched.
          picture = el("canvas", { class: "scene", width: "64", height: "64", role: "img", aria: { label: `example image ${name}` } });
          this.drawScene(picture, name);
        } else {
          // Other bundles name image files of their data set; we never fetch them.
          picture = el("code", { class: "example-path", text: name });
        }
        return el(
          "li",
          { dataset: { row: String(row) } },
          el("figure", {}, picture, el("figcaption", {}, bar(act, max, `activation ${fmt(act)}`), el("span", { class: "num", text: fmt(act) }), ex?.caption ? el("span", { class: "example-caption", text: ex.caption }) : null)),
        );
      }),
    );
  }

  drawScene(canvas, name) {
    const model = this.app.state.model.hash;
    if (this.sceneModel !== model) {
      this.scenes.clear();
      this.sceneModel = model;
    }
    if (!this.scenes.has(name)) {
      const p = this.app.renderScene(name).then((r) => new ImageData(new Uint8ClampedArray(r.rgba.buffer, r.rgba.byteOffset, r.rgba.byteLength), r.width, r.height));
      p.catch(() => this.scenes.delete(name)); // a failure is shown, and retried next time
      this.scenes.set(name, p);
    }
    this.scenes.get(name).then(
      (img) => {
        canvas.width = img.width;
        canvas.height = img.height;
        canvas.getContext("2d").putImageData(img, 0, 0);
        canvas.dataset.drawn = "1";
      },
      (err) => {
        const note = el("code", { class: "example-path", text: `${name} (${err.message})` });
        canvas.replaceWith(note);
      },
    );
  }

  exampleTexts(f) {
    const top = (f.top_texts || []).slice(0, EXAMPLE_TEXTS);
    if (!top.length) return emptyNote("No text examples.");
    const max = Math.max(...top.map((t) => t[1]));
    return el(
      "ol",
      { class: "example-texts" },
      top.map(([row, act]) => {
        const ex = this.example(row);
        return el("li", { dataset: { row: String(row) } }, bar(act, max, `activation ${fmt(act)}`), el("span", { class: "num", text: fmt(act) }), el("q", { text: ex?.caption ?? `row ${row}` }));
      }),
    );
  }

  currentActivations(f) {
    const { state } = this.app;
    const inputs = [...state.images, ...state.prompts].filter((x) => x.status === "ok" && x.activations);
    if (!inputs.length) return emptyNote("No analysed inputs.");
    const vals = inputs.map((x) => x.activations[f.id] ?? 0);
    const max = Math.max(...vals, ...(f.top_images || []).map((t) => t[1]), ...(f.top_texts || []).map((t) => t[1]));
    return el(
      "ul",
      { class: "current-acts" },
      inputs.map((x, i) =>
        el("li", { dataset: { key: x.key } }, inputTitle(x), bar(vals[i], max, `activation ${fmt(vals[i])}`), el("span", { class: "num", text: vals[i] > 0 ? fmt(vals[i]) : "0 (inactive)" })),
      ),
    );
  }
}

function fact(term, value) {
  return el("div", {}, el("dt", { text: term }), el("dd", { text: value }));
}
