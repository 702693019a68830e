// The dictionary view's comparison (issue 15): the loaded bundle against another one the
// user picks, computed in the worker exactly as `monoscope compare` does (same table rows,
// class shares by MDS and by the Iso-Energy rule, class overlap over features matched by
// decoder cosine). Bridge Scores and the factor table need paired embeddings or the world
// generator, so they are CLI-only.

import { el, replaceKeepingFocus, fmt, CLASSES, classColours, classBadge } from "../dom.js";
import { classifyBundleFiles } from "../sources.js";
import { fieldError } from "../app/status.js";
import { state, runtime } from "../app/state.js";

const pair = (a, b, digits = 3) => `${fmt(a, digits)} / ${fmt(b, digits)}`;
const counts = (c) => (c ? c.join(" / ") : "–");

// [label, (row) => text], the rows `monoscope compare` prints.
const ROWS = [
  ["kind", (b) => b.kind],
  ["features K", (b) => String(b.features)],
  ["FVU image / text", (b) => pair(b.quality.image.fvu, b.quality.text.fvu)],
  ["explained variance image / text", (b) => pair(b.quality.image.explained_variance, b.quality.text.explained_variance)],
  ["cosine image / text", (b) => pair(b.quality.image.cosine, b.quality.text.cosine)],
  ["L0 image / text", (b) => pair(b.quality.image.l0, b.quality.text.l0, 1)],
  ["dead image / text", (b) => pair(b.quality.image.dead_fraction, b.quality.text.dead_fraction)],
  ["classes ImgD / TextD / CrossD / Rare (MDS)", (b) => counts(b.class_counts)],
  ["classes by Iso-Energy", (b) => counts(b.energy_class_counts)],
  ["MDS and Iso-Energy agree", (b) => (b.energy_agreement ? `${b.energy_agreement[0]} of ${b.energy_agreement[1]}` : "–")],
  ["mean EmbSim image / text", (b) => pair(b.mean_emb_sim[0], b.mean_emb_sim[1])],
  ["WinRate vs raw dims image / text", (b) => pair(b.win_rates.vs_raw_dims[0][0], b.win_rates.vs_raw_dims[1][0])],
  ["WinRate vs random image / text", (b) => pair(b.win_rates.vs_random_directions[0][0], b.win_rates.vs_random_directions[1][0])],
];

// A stacked bar of class shares, drawn with CSS widths (no markup from data).
function shareBar(countsOf, label) {
  const total = countsOf.reduce((s, n) => s + n, 0) || 1;
  const colours = classColours();
  return el(
    "div",
    { class: "share-bar", role: "img", aria: { label: `${label}: ${CLASSES.map((c, i) => `${c} ${countsOf[i]}`).join(", ")}` } },
    countsOf.map((n, i) =>
      n > 0 ? el("span", { class: "share", title: `${CLASSES[i]}: ${n}`, style: { width: `${(100 * n) / total}%`, background: colours[CLASSES[i]] } }) : null,
    ),
  );
}

export class CompareView {
  constructor() {
    this.view = document.getElementById("compare-view");
    this.last = null; // the last comparison, for the test hooks
    document.getElementById("compare-files").addEventListener("change", (ev) => this.pick(ev.target.files));
  }

  async pick(fileList) {
    fieldError("compare-error", null);
    try {
      if (!state.bundle) throw new Error("load a bundle first: the comparison is between the loaded bundle and another");
      const files = classifyBundleFiles(fileList);
      replaceKeepingFocus(this.view, el("p", { text: "comparing…" }));
      const report = await runtime.engine.compareWith(files, `other (${files.features.name})`, state.bundle.label);
      this.last = report.comparison;
      this.render(report.comparison);
    } catch (err) {
      replaceKeepingFocus(this.view);
      fieldError("compare-error", err.message || String(err));
    }
  }

  render(c) {
    const head = el("tr", {}, el("th", { scope: "col", text: "" }), c.bundles.map((b) => el("th", { scope: "col", text: b.name })));
    const body = ROWS.map(([label, cell]) => el("tr", {}, el("th", { scope: "row", text: label }), c.bundles.map((b) => el("td", { text: cell(b) }))));
    const table = el("table", { class: "compare-table" }, el("thead", {}, head), el("tbody", {}, body));
    const bars = el(
      "div",
      { class: "compare-bars" },
      c.bundles.flatMap((b) => [
        el("div", { class: "share-row" }, el("span", { class: "share-label", text: `${b.name}: MDS` }), shareBar(b.class_counts, `${b.name} by MDS`)),
        b.energy_class_counts
          ? el("div", { class: "share-row" }, el("span", { class: "share-label", text: `${b.name}: Iso-Energy` }), shareBar(b.energy_class_counts, `${b.name} by Iso-Energy`))
          : null,
      ]),
      el("p", { class: "legend" }, CLASSES.map((cls) => [classBadge(cls), " "])),
    );
    const overlaps = c.overlaps.map((o) =>
      el("p", {
        class: "compare-overlap",
        text: `${o.matched} of ${o.of} features of ${c.bundles[o.a].name} have an atom in ${c.bundles[o.b].name} at decoder cosine ≥ 0.9; ${o.same_class} of those keep their class.`,
      }),
    );
    replaceKeepingFocus(this.view, table, bars, overlaps.length ? overlaps : el("p", { text: "No class overlap: a dictionary without decoder (NCL) or of another width." }));
  }
}
