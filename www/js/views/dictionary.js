// The dictionary: summary and class counts, the MDS histogram (Chart.js: bars stacked by class,
// dashed class thresholds, the chosen feature marked) and a searchable feature list.

import { el, replaceKeepingFocus, classBadge, classLegend, classColours, themeColour, fmt, CLASSES } from "../dom.js";
import { featureLabel, emptyNote } from "./common.js";

const BINS = 20;
const LIST_LIMIT = 500; // enough for the demo; larger bundles are searched

// Vertical dashed lines at the class thresholds and at the chosen feature's MDS: a Chart.js
// plugin object (Chart.js has no vertical-line annotation without an extra plugin package).
const markers = {
  id: "monoscopeMarkers",
  afterDatasetsDraw(chart, _args, opts) {
    const { ctx, chartArea, scales } = chart;
    for (const m of opts.lines || []) {
      if (!Number.isFinite(m.value)) continue;
      const x = scales.x.getPixelForValue(m.value);
      ctx.save();
      ctx.strokeStyle = m.colour;
      ctx.lineWidth = m.width || 1.5;
      ctx.setLineDash(m.dash || [6, 4]);
      ctx.beginPath();
      ctx.moveTo(x, chartArea.top);
      ctx.lineTo(x, chartArea.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = m.colour;
      ctx.font = "12px system-ui, sans-serif";
      ctx.textAlign = m.align || "center";
      ctx.fillText(m.label, x + (m.align === "left" ? 4 : m.align === "right" ? -4 : 0), chartArea.top + 12);
      ctx.restore();
    }
  },
};

export class DictionaryView {
  constructor(app) {
    this.app = app;
    this.summary = document.getElementById("dictionary-summary");
    this.canvas = document.getElementById("mds-chart");
    this.caption = document.getElementById("mds-caption");
    this.figure = document.getElementById("mds-figure");
    this.search = document.getElementById("feature-search");
    this.filter = document.getElementById("class-filter");
    this.count = document.getElementById("feature-count");
    this.list = document.getElementById("feature-list");
    this.chart = null;
    this.search.addEventListener("input", () => this.renderList());
    this.filter.addEventListener("change", () => this.renderList());
    document.getElementById("feature-search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      // Enter opens the first match.
      const first = this.list.querySelector("button.feature-link");
      if (first) first.click();
    });
  }

  render() {
    this.renderSummary();
    this.renderChart();
    this.renderList();
  }

  renderSummary() {
    const b = this.app.state.bundle;
    if (!b) {
      replaceKeepingFocus(this.summary, emptyNote(`No bundle loaded: the dictionary views need a result bundle (the demo model has one); make one for this model with extract, train and analyze (README, "Your own model"), then open it under Model and bundle: local files, or a hub repo (bundle=hf:owner/name).`));
      return;
    }
    const s = b.summary || {};
    const th = b.manifest?.thresholds || s.thresholds || {};
    const counts = b.manifest?.class_counts || s.class_counts || [];
    const rule = th.rule?.rule || th.rule || "?";
    const q = b.manifest?.metrics?.quality;
    const wr = b.manifest?.metrics?.win_rates;
    const countList = el(
      "ul",
      { class: "class-counts", aria: { label: "features per class" } },
      CLASSES.map((c, i) => el("li", { dataset: { class: c } }, classBadge(c), " ", el("span", { class: "count", text: String(counts[i] ?? 0) }))),
    );
    const facts = el(
      "dl",
      { class: "facts" },
      fact("features", String(b.features.length)),
      fact("dictionary", `${s.kind ?? b.manifest?.dictionary?.config?.kind ?? "?"}, d ${s.d ?? "?"}`),
      fact("class rule", `${rule}: ImgD if MDS > ${fmt(th.img, 3)}, TextD if MDS < ${fmt(th.text, 3)}`),
      fact("centered", String(s.center ?? b.manifest?.analysis?.center ?? false)),
      q ? fact("reconstruction (cos)", `image ${fmt(q.image?.cosine, 3)}, text ${fmt(q.text?.cosine, 3)}`) : null,
      wr?.vs_raw_dims ? fact("EmbSim win rate vs raw CLIP dims", `image ${fmt(wr.vs_raw_dims[0]?.[0], 2)}, text ${fmt(wr.vs_raw_dims[1]?.[0], 2)}`) : null,
      fact("model", s.model_matches === false ? `different model (bundle: ${s.model_hash})` : "matches the loaded model"),
    );
    replaceKeepingFocus(this.summary, countList, facts, classLegend());
  }

  renderChart() {
    const b = this.app.state.bundle;
    if (this.chart) {
      this.chart.destroy();
      this.chart = null;
    }
    this.figure.hidden = !b;
    if (!b) return;
    if (typeof window.Chart !== "function") {
      this.caption.textContent = "The chart library did not load.";
      return;
    }
    const colours = classColours();
    const th = b.manifest?.thresholds || b.summary?.thresholds || {};
    const bins = {};
    for (const c of CLASSES) bins[c] = new Array(BINS).fill(0);
    let rare = 0;
    for (const f of b.features) {
      if (!Number.isFinite(f.mds)) {
        rare += 1;
        continue;
      }
      const i = Math.min(BINS - 1, Math.max(0, Math.floor(f.mds * BINS)));
      bins[CLASSES.includes(f.class) ? f.class : "Rare"][i] += 1;
    }
    const fg = themeColour("--fg", "#222");
    const grid = themeColour("--border", "#ccc");
    const datasets = CLASSES.filter((c) => bins[c].some((v) => v > 0)).map((c) => ({
      label: c,
      data: bins[c].map((y, i) => ({ x: (i + 0.5) / BINS, y })),
      backgroundColor: colours[c],
      borderWidth: 0,
      barPercentage: 1,
      categoryPercentage: 0.95,
      stack: "mds",
    }));
    this.chart = new window.Chart(this.canvas, {
      type: "bar",
      data: { datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: true,
        scales: {
          x: { type: "linear", min: 0, max: 1, stacked: true, title: { display: true, text: "MDS (0 = text only, 1 = image only)", color: fg }, ticks: { color: fg }, grid: { color: grid } },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: "features", color: fg }, ticks: { color: fg, precision: 0 }, grid: { color: grid } },
        },
        plugins: {
          legend: { labels: { color: fg } },
          tooltip: {
            callbacks: {
              title: (items) => {
                const x = items[0]?.raw?.x ?? 0;
                return `MDS ${(x - 0.5 / BINS).toFixed(2)}–${(x + 0.5 / BINS).toFixed(2)}`;
              },
            },
          },
          monoscopeMarkers: { lines: this.markerLines(th) },
        },
      },
      plugins: [markers],
    });
    const counts = CLASSES.map((c) => `${c} ${bins[c].reduce((a, v) => a + v, 0)}`).join(", ");
    const text = `MDS histogram of ${b.features.length - rare} classified features (${counts}); thresholds TextD < ${fmt(th.text, 2)}, ImgD > ${fmt(th.img, 2)}${rare ? `; ${rare} rare features without MDS not drawn` : ""}.`;
    this.canvas.setAttribute("aria-label", text);
    this.caption.textContent = text;
  }

  markerLines(th) {
    const fg = themeColour("--fg", "#222");
    const lines = [
      { value: th.text, label: "TextD", colour: fg, align: "right" },
      { value: th.img, label: "ImgD", colour: fg, align: "left" },
    ];
    const f = this.app.state.feature !== null ? this.app.state.bundle?.byId.get(this.app.state.feature) : null;
    if (f && Number.isFinite(f.mds)) {
      lines.push({ value: f.mds, label: `#${f.id}`, colour: themeColour("--accent", "#36c"), dash: [2, 2], width: 2.5, align: "center" });
    }
    return lines;
  }

  // The chosen feature: marked in the histogram and in the list.
  highlight() {
    if (this.chart) {
      const th = this.app.state.bundle?.manifest?.thresholds || {};
      this.chart.options.plugins.monoscopeMarkers.lines = this.markerLines(th);
      this.chart.update("none");
    }
    for (const b of this.list.querySelectorAll("button.feature-link")) {
      const on = Number(b.dataset.feature) === this.app.state.feature;
      b.classList.toggle("current", on);
      if (on) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  }

  matches() {
    const b = this.app.state.bundle;
    if (!b) return [];
    const cls = this.filter.value;
    const terms = this.search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    return b.features.filter((f) => {
      if (cls && f.class !== cls) return false;
      return terms.every((t) => {
        const id = t.replace(/^#/, "");
        if (/^\d+$/.test(id)) return f.id === Number(id);
        if (CLASSES.some((c) => c.toLowerCase() === t)) return String(f.class).toLowerCase() === t;
        return (f.labels || []).some((l) => String(Array.isArray(l) ? l[0] : l).toLowerCase().includes(t));
      });
    });
  }

  renderList() {
    const b = this.app.state.bundle;
    if (!b) {
      this.count.textContent = "";
      replaceKeepingFocus(this.list);
      return;
    }
    const found = this.matches();
    this.count.textContent =
      found.length > LIST_LIMIT
        ? `${found.length} features match; the first ${LIST_LIMIT} are shown (refine the search)`
        : `${found.length} feature${found.length === 1 ? "" : "s"} match`;
    const rows = found.slice(0, LIST_LIMIT).map((f) =>
      el(
        "li",
        { dataset: { feature: String(f.id), class: f.class } },
        el(
          "button",
          {
            type: "button",
            class: "feature-link",
            dataset: { feature: String(f.id), focusKey: `dict-f${f.id}` },
            onclick: () => this.app.selectFeature(f.id),
          },
          classBadge(f.class),
          el("span", { class: "feature-id", text: `#${f.id}` }),
          el("span", { class: "feature-label", text: featureLabel(f) }),
          el("span", { class: "num", text: `MDS ${fmt(f.mds, 2)}` }),
          el("span", { class: "num", text: `support ${f.support ?? "–"}` }),
        ),
      ),
    );
    replaceKeepingFocus(this.list, rows);
    this.highlight();
  }
}

function fact(term, value) {
  return el("div", {}, el("dt", { text: term }), el("dd", { text: value }));
}
