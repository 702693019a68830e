// The attribute probe (SPEC §4.1): groups of images, each with a prompt; zero-shot accuracy
// from the CLIP embedding, the dictionary reconstruction and the reconstruction without each
// feature class, and the features whose removal moves a group most.

import { el, replaceKeepingFocus, classBadge, fmt, bar, errorBox } from "../dom.js";
import { fetchBlob, fetchJson, progressRow } from "./common.js";

const MAX_GROUPS = 6;
const MAX_THUMBS = 8;
const INTRO =
  "Zero-shot classify groups of images from the CLIP embedding, the dictionary reconstruction, and the reconstruction without ImgD, TextD or CrossD features (SPEC §4.1). Group i should match prompt i.";

function accuracyRow(a) {
  return el(
    "tr",
    {},
    el("th", { scope: "row", text: a.variant }),
    el("td", { text: `${a.correct}/${a.total}` }),
    el("td", {}, bar(a.accuracy, 1, `accuracy ${fmt(a.accuracy, 2)}`), " ", fmt(a.accuracy, 2)),
    el("td", { text: `[${fmt(a.ci95[0], 2)}, ${fmt(a.ci95[1], 2)}]` }),
  );
}

function accuracyTable(g) {
  const head = ["variant", "correct", "accuracy", "95% CI"].map((h) => el("th", { scope: "col", text: h }));
  return el(
    "table",
    { class: "probe-table" },
    el("caption", { text: "Zero-shot accuracy with a 95% bootstrap interval" }),
    el("thead", {}, el("tr", {}, head)),
    el("tbody", {}, g.accuracy.map(accuracyRow)),
  );
}

class ProbePanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.groups = [];
    this.list = el("div", { class: "probe-groups" });
    this.status = el("p", { class: "app-status", role: "status" });
    this.results = el("div", { class: "probe-results" });
    this.progress = progressRow();
    this.runButton = el("button", { type: "button", text: "Run probe", dataset: { testid: "probe-run" }, onclick: () => this.run() });
    const addButton = el("button", { type: "button", text: "Add group", onclick: () => this.addGroup() });
    const demoButton = el("button", { type: "button", text: "Load demo groups (red / blue)", onclick: () => this.loadDemo() });
    this.addGroup("group 1", "a photo of a man");
    this.addGroup("group 2", "a photo of a woman");
    root.replaceChildren(
      el("p", { class: "muted" }, INTRO),
      this.list,
      el("div", { class: "app-actions" }, addButton, ctx.isDemo() ? demoButton : null, this.runButton),
      this.progress.row,
      this.status,
      this.results,
    );
  }

  addGroup(name = "", prompt = "") {
    if (this.groups.length >= MAX_GROUPS) return null;
    const n = this.groups.length + 1;
    const g = { files: [], error: null };
    g.name = el("input", { type: "text", value: name || `group ${n}`, aria: { label: `group ${n} name` } });
    g.prompt = el("input", { type: "text", value: prompt, placeholder: "prompt for this group", aria: { label: `group ${n} prompt` } });
    g.input = el("input", { type: "file", accept: "image/*", multiple: true, aria: { label: `group ${n} images` } });
    g.thumbs = el("div", { class: "thumb-strip" });
    g.count = el("span", { class: "muted" });
    g.errorSlot = el("div");
    g.input.addEventListener("change", () => {
      this.setFiles(g, Array.from(g.input.files || []).map((f) => ({ name: f.name, blob: f })));
      g.input.value = "";
    });
    g.card = this.groupCard(g, n);
    this.groups.push(g);
    this.list.append(g.card);
    return g;
  }

  groupCard(g, n) {
    const remove = el("button", {
      type: "button",
      text: "Remove",
      aria: { label: `remove group ${n}` },
      onclick: () => {
        this.groups.splice(this.groups.indexOf(g), 1);
        g.card.remove();
      },
    });
    return el(
      "fieldset",
      { class: "probe-group" },
      el("legend", { text: `Group ${n}` }),
      el("label", {}, "Name ", g.name),
      el("label", {}, "Prompt ", g.prompt),
      el("label", {}, "Images ", g.input),
      g.count,
      g.thumbs,
      g.errorSlot,
      remove,
    );
  }

  setFiles(g, files) {
    for (const t of g.thumbs.querySelectorAll("img")) URL.revokeObjectURL(t.src);
    g.files = files;
    g.count.textContent = `${files.length} image${files.length === 1 ? "" : "s"}`;
    const thumbs = files.slice(0, MAX_THUMBS).map((f) => el("img", { src: URL.createObjectURL(f.blob), alt: f.name, class: "thumb" }));
    replaceKeepingFocus(g.thumbs, thumbs);
    g.errorSlot.replaceChildren();
  }

  // The demo world's single-object scenes, one group per colour (assets/demo/probe/<colour>/).
  async loadDemoGroup(colour) {
    const base = new URL(`demo/probe/${colour}/`, this.ctx.assetBase);
    const index = await fetchJson(new URL("index.json", base));
    const files = await Promise.all(index.map(async (e) => ({ name: e.file, blob: await fetchBlob(new URL(e.file, base)) })));
    this.setFiles(this.addGroup(colour, colour), files);
  }

  async loadDemo() {
    this.status.textContent = "loading demo groups…";
    try {
      while (this.groups.length) this.groups.pop().card.remove();
      for (const colour of ["red", "blue"]) await this.loadDemoGroup(colour);
      this.status.textContent = "demo groups loaded: single-object scenes by colour, prompts “red” and “blue”";
    } catch (err) {
      this.status.textContent = "";
      this.results.replaceChildren(errorBox(err.message));
    }
  }

  moverItem(m) {
    const open = () => this.ctx.openFeature?.(m.feature);
    return el(
      "li",
      {},
      el("button", { type: "button", class: "link", text: `#${m.feature}`, onclick: open }),
      " ",
      classBadge(m.class),
      ` margin ${m.delta_margin >= 0 ? "+" : ""}${fmt(m.delta_margin, 4)} (active on ${m.active_on})`,
    );
  }

  groupResult(g) {
    return el(
      "div",
      { class: "probe-group-result", dataset: { group: g.name } },
      el("h3", {}, `${g.name} — expected “`, g.expected, "”"),
      accuracyTable(g),
      el("p", { class: "muted", text: "Features whose removal alone moves this group most (change of the margin):" }),
      el("ul", { class: "movers" }, g.movers.map((m) => this.moverItem(m))),
    );
  }

  renderReport(report) {
    const out = [];
    if (report.skipped?.length) {
      out.push(el("p", { class: "warning", role: "alert" }, `Skipped ${report.skipped.length} unreadable image(s): `, report.skipped.join("; ")));
    }
    for (const g of report.groups) out.push(this.groupResult(g));
    replaceKeepingFocus(this.results, out);
  }

  // Marks every group that lacks images or a prompt; true when the probe can run.
  validate() {
    const usable = this.groups.filter((g) => g.files.length);
    let bad = false;
    for (const g of this.groups) {
      g.errorSlot.replaceChildren();
      if (!g.files.length) {
        g.errorSlot.append(errorBox("choose at least one image for this group"));
        bad = true;
      }
      if (!g.prompt.value.trim()) {
        g.errorSlot.append(errorBox("give this group a prompt"));
        bad = true;
      }
    }
    if (usable.length >= 2 && !bad) return true;
    if (this.groups.length < 2) this.results.append(errorBox("the probe needs at least two groups"));
    return false;
  }

  // The worker's arguments: every image's bytes and the index of its group.
  async request() {
    const images = [];
    const groupOf = [];
    for (const [i, g] of this.groups.entries()) {
      for (const f of g.files) {
        images.push(await f.blob.arrayBuffer());
        groupOf.push(i);
      }
    }
    const request = JSON.stringify({
      prompts: this.groups.map((g) => g.prompt.value),
      names: this.groups.map((g) => g.name.value || "group"),
    });
    return { request, images, groups: groupOf };
  }

  async run() {
    this.results.replaceChildren();
    if (!this.validate()) return;
    this.runButton.disabled = true;
    this.status.textContent = "embedding images…";
    try {
      const args = await this.request();
      const json = await this.ctx.call("probe", args, {
        transfer: args.images,
        onProgress: (d, t) => this.progress.set(d, t, `embedded ${d} / ${t} images`),
      });
      const report = JSON.parse(json);
      this.ctx.result.probe = report;
      this.renderReport(report);
      this.status.textContent = "done";
    } catch (err) {
      this.status.textContent = "";
      this.results.append(errorBox(err.message));
    } finally {
      this.progress.hide();
      this.runButton.disabled = false;
    }
  }
}

export function mountProbe(root, ctx) {
  const panel = new ProbePanel(root, ctx);
  return { loadDemo: () => panel.loadDemo(), run: () => panel.run() };
}
