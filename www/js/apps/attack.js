// Cross-modal adversarial examples (SPEC §4.2): PGD on the pixels toward a target label, run
// step by step in the worker so it shows progress and can be cancelled between steps; then the
// clean / adversarial / difference images, which feature classes moved, and the defense.

import { el, replaceKeepingFocus, classBadge, fmt, bar, errorBox } from "../dom.js";
import { DEMO_COLOURS, rgbaCanvas, figure, fetchBlob, progressRow } from "./common.js";

const INTRO =
  "PGD on the pixels (L∞ ball) pulls the image toward a target prompt, on the whole embedding or one feature class only; then: which classes moved, and whether removing ImgD or TextD features restores the clean prediction (SPEC §4.2).";
const OBJECTIVES = ["embedding", "ImgD", "TextD", "CrossD"];

const demoLabels = () => DEMO_COLOURS.map((c) => `a ${c} square`);

function restored(prediction, yes) {
  return `${prediction}${yes ? " (clean prediction restored)" : ""}`;
}

// The report as a definition list: [term, description, class of the description].
function reportList(rep) {
  const rows = [
    ["clean prediction", rep.clean],
    ["adversarial prediction", rep.adversarial],
    ["target", rep.target],
    ["success", rep.success ? "yes" : "no", rep.success ? "ok" : "warning"],
    ["perturbation", `L∞ ${fmt(rep.linf * 255, 2)}/255 · L2 ${fmt(rep.l2, 3)}`],
    ["similarity to the target", `${fmt(rep.clean_similarity)} → ${fmt(rep.adversarial_similarity)}`],
    ["defense: without ImgD", restored(rep.defended_without_imgd, rep.restored_without_imgd)],
    ["defense: without TextD", restored(rep.defended_without_textd, rep.restored_without_textd)],
  ];
  return el(
    "dl",
    { class: "attack-report", dataset: { success: String(rep.success) } },
    rows.map(([term, text, cls]) => [el("dt", { text: term }), el("dd", { class: cls, text })]),
  );
}

function classShift(shift) {
  const maxShift = Math.max(...shift.slice(0, 3), 1e-12);
  return el(
    "ul",
    { class: "class-shift" },
    ["ImgD", "TextD", "CrossD"].map((c, i) =>
      el("li", {}, classBadge(c), " ", bar(shift[i], maxShift, `${c} ${fmt(shift[i], 5)}`), " ", fmt(shift[i], 5)),
    ),
  );
}

class AttackPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.image = null; // {name, blob}
    this.running = false;
    this.cancelled = false;
    this.buildInputs();
    this.runButton = el("button", { type: "button", text: "Run attack", dataset: { testid: "attack-run" }, onclick: () => this.run() });
    this.cancelButton = el("button", { type: "button", text: "Cancel", disabled: true, onclick: () => this.requestCancel() });
    this.demoButton = el("button", { type: "button", text: "Use a demo image", onclick: () => this.useDemo() });
    this.progress = progressRow();
    this.status = el("p", { class: "app-status", role: "status" });
    this.results = el("div", { class: "attack-results" });
    this.setLabels(ctx.isDemo() ? demoLabels() : ["a photo of a cat", "a photo of a dog"]);
    root.replaceChildren(...this.layout());
  }

  buildInputs() {
    this.preview = el("img", { class: "thumb", alt: "image to attack", hidden: true });
    this.imageName = el("span", { class: "muted", text: "no image chosen" });
    this.fileInput = el("input", { type: "file", accept: "image/*", aria: { label: "image to attack" } });
    this.imageError = el("div");
    this.labels = el("textarea", { rows: 6, aria: { label: "zero-shot labels, one per line" } });
    this.target = el("select", { aria: { label: "target label" } });
    this.eps = el("input", { type: "number", min: 0.5, max: 64, step: 0.5, value: 4, aria: { label: "epsilon in 1/255 units" } });
    this.steps = el("input", { type: "number", min: 1, max: 500, step: 1, value: 10, aria: { label: "PGD steps" } });
    const option = (o) => el("option", { value: o, text: o === "embedding" ? "whole embedding" : `${o} features only` });
    this.objective = el("select", { aria: { label: "objective" } }, OBJECTIVES.map(option));
    this.labels.addEventListener("input", () => this.syncTargets());
    this.fileInput.addEventListener("change", () => {
      const f = this.fileInput.files?.[0];
      this.fileInput.value = "";
      if (f) this.setImage(f.name, f);
    });
  }

  layout() {
    const demo = this.ctx.isDemo() ? this.demoButton : null;
    return [
      el("p", { class: "muted" }, INTRO),
      el("div", { class: "attack-input" }, el("label", {}, "Image ", this.fileInput), demo, this.preview, this.imageName, this.imageError),
      el("label", { class: "block" }, "Labels (one per line)", this.labels),
      el(
        "div",
        { class: "app-options" },
        el("label", {}, "Target ", this.target),
        el("label", {}, "ε (/255) ", this.eps),
        el("label", {}, "Steps ", this.steps),
        el("label", {}, "Objective ", this.objective),
      ),
      el("div", { class: "app-actions" }, this.runButton, this.cancelButton),
      this.progress.row,
      this.status,
      this.results,
    ];
  }

  setLabels(lines) {
    this.labels.value = lines.join("\n");
    this.syncTargets();
  }

  labelList() {
    return this.labels.value
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
  }

  // The target choices follow the labels; a still-valid choice is kept.
  syncTargets() {
    const keep = this.target.value;
    this.target.replaceChildren(
      el("option", { value: "", text: "nearest wrong label" }),
      ...this.labelList().map((l, i) => el("option", { value: String(i), text: l })),
    );
    if ([...this.target.options].some((o) => o.value === keep)) this.target.value = keep;
  }

  setImage(name, blob) {
    this.image = { name, blob };
    this.imageName.textContent = name;
    if (this.preview.src) URL.revokeObjectURL(this.preview.src);
    this.preview.src = URL.createObjectURL(blob);
    this.preview.hidden = false;
    this.imageError.replaceChildren();
  }

  async useDemo() {
    try {
      this.setImage("scene-1.png (demo)", await fetchBlob(new URL("demo/images/scene-1.png", this.ctx.assetBase)));
      this.setLabels(demoLabels());
    } catch (err) {
      this.imageError.replaceChildren(errorBox(err.message));
    }
  }

  requestCancel() {
    if (!this.running) return;
    this.cancelled = true;
    this.status.textContent = "cancelling after this step…";
  }

  renderResult(r) {
    const rep = JSON.parse(r.report);
    this.ctx.result.attack = rep;
    const amplify = fmt(0.5 / (Number(this.eps.value) / 255), 0);
    replaceKeepingFocus(
      this.results,
      el(
        "div",
        { class: "attack-images" },
        figure(rgbaCanvas(r.clean, r.side, "clean image"), "clean"),
        figure(rgbaCanvas(r.adversarial, r.side, "adversarial image"), "adversarial"),
        figure(rgbaCanvas(r.difference, r.side, "difference, amplified"), `difference (×${amplify})`),
      ),
      reportList(rep),
      el("h3", { text: "Which feature classes moved (mean |Δ activation| per feature)" }),
      classShift(rep.class_shift_per_feature),
    );
  }

  // The checked settings, or null after showing what is wrong.
  settings() {
    if (!this.image) {
      this.imageError.replaceChildren(errorBox("choose an image first"));
      return null;
    }
    const labels = this.labelList();
    if (labels.length < 2) {
      this.results.append(errorBox("give at least two labels, one per line"));
      return null;
    }
    const eps = Number(this.eps.value);
    const steps = Math.round(Number(this.steps.value));
    if (!(eps > 0 && eps <= 255) || !(steps >= 1 && steps <= 500)) {
      this.results.append(errorBox("epsilon must be in (0, 255] (in 1/255 units) and steps in 1..500"));
      return null;
    }
    const target = this.target.value === "" ? null : Number(this.target.value);
    return { labels, target, eps: eps / 255, steps, objective: this.objective.value };
  }

  // PGD one step per request, so Cancel is honoured between steps. Returns the steps done.
  async runSteps(total) {
    let step = 0;
    while (step < total && !this.cancelled) {
      const s = await this.ctx.call("attack_step");
      step = s.step;
      this.progress.set(step, total, `step ${step} / ${total} · objective ${fmt(s.objective)} · ${this.ctx.backend()}`);
      this.ctx.result.attackSteps = step;
    }
    return step;
  }

  setRunning(on) {
    this.running = on;
    this.runButton.disabled = on;
    this.cancelButton.disabled = !on;
  }

  async attack(request) {
    const t0 = performance.now();
    const bytes = await this.image.blob.arrayBuffer();
    const begun = await this.ctx.call("attack_begin", { bytes, request: JSON.stringify(request) }, { transfer: [bytes] });
    const step = await this.runSteps(begun.steps);
    if (this.cancelled) {
      await this.ctx.call("attack_cancel");
      this.status.textContent = `cancelled after ${step} step(s)`;
      this.ctx.result.attackCancelled = true;
      return;
    }
    this.status.textContent = "evaluating…";
    this.renderResult(await this.ctx.call("attack_finish"));
    this.status.textContent = `done in ${fmt((performance.now() - t0) / 1000, 1)} s on ${this.ctx.backend()}`;
  }

  async run() {
    this.results.replaceChildren();
    const request = this.settings();
    if (!request) return;
    this.cancelled = false;
    this.setRunning(true);
    this.status.textContent = "starting…";
    try {
      await this.attack(request);
    } catch (err) {
      this.status.textContent = "";
      this.results.append(errorBox(err.message));
    } finally {
      this.progress.hide();
      this.setRunning(false);
    }
  }
}

export function mountAttack(root, ctx) {
  const panel = new AttackPanel(root, ctx);
  return { run: () => panel.run(), cancel: () => panel.cancelButton.click(), useDemo: () => panel.demoButton.click() };
}
