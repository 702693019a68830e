// The paper's three applications in the page (issue 6): the attribute probe, cross-modal
// adversarial examples with their defense, and modality-specific control with the demo
// world's image decoder. All model work goes through the engine worker; this module only
// builds controls, sends requests and draws results. Every piece of data is set as text.

import { el, replaceKeepingFocus, classBadge, fmt, bar, errorBox } from "./dom.js";

const DEMO_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"];
const MAX_GROUPS = 6;
const MAX_THUMBS = 8;
const CONTROL_DEBOUNCE_MS = 60;

// Draws RGBA bytes (side x side) into a new canvas; CSS scales it up without smoothing.
function rgbaCanvas(rgba, side, label) {
  const canvas = el("canvas", { width: side, height: side, class: "pixel-canvas", role: "img", aria: { label } });
  const ctx = canvas.getContext("2d");
  ctx.putImageData(new ImageData(new Uint8ClampedArray(rgba), side, side), 0, 0);
  return canvas;
}

function figure(canvas, caption) {
  return el("figure", { class: "app-figure" }, canvas, el("figcaption", { text: caption }));
}

async function fetchBlob(url) {
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`could not load ${url}: HTTP ${res.status}`);
  return res.blob();
}

async function fetchJson(url) {
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`could not load ${url}: HTTP ${res.status}`);
  return res.json();
}

function download(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function progressRow() {
  const meter = el("progress", { max: 1, value: 0, aria: { label: "progress" } });
  const text = el("span", { class: "app-progress-text", role: "status" });
  const row = el("div", { class: "app-progress", hidden: true }, meter, text);
  return {
    row,
    set(done, total, message) {
      row.hidden = false;
      meter.max = Math.max(1, total);
      meter.value = Math.min(done, total);
      text.textContent = message ?? `${done} / ${total}`;
    },
    hide() {
      row.hidden = true;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Probe.

function mountProbe(root, ctx) {
  const groups = [];
  const list = el("div", { class: "probe-groups" });
  const status = el("p", { class: "app-status", role: "status" });
  const results = el("div", { class: "probe-results" });
  const progress = progressRow();
  const runButton = el("button", { type: "button", text: "Run probe", dataset: { testid: "probe-run" } });
  const addButton = el("button", { type: "button", text: "Add group" });
  const demoButton = el("button", { type: "button", text: "Load demo groups (red / blue)" });

  function addGroup(name = "", prompt = "") {
    if (groups.length >= MAX_GROUPS) return null;
    const n = groups.length + 1;
    const g = { files: [], error: null };
    g.name = el("input", { type: "text", value: name || `group ${n}`, aria: { label: `group ${n} name` } });
    g.prompt = el("input", { type: "text", value: prompt, placeholder: "prompt for this group", aria: { label: `group ${n} prompt` } });
    g.input = el("input", { type: "file", accept: "image/*", multiple: true, aria: { label: `group ${n} images` } });
    g.thumbs = el("div", { class: "thumb-strip" });
    g.count = el("span", { class: "muted" });
    g.errorSlot = el("div");
    g.input.addEventListener("change", () => {
      setFiles(g, Array.from(g.input.files || []).map((f) => ({ name: f.name, blob: f })));
      g.input.value = "";
    });
    const remove = el("button", {
      type: "button",
      text: "Remove",
      aria: { label: `remove group ${n}` },
      onclick: () => {
        groups.splice(groups.indexOf(g), 1);
        g.card.remove();
      },
    });
    g.card = el(
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
    groups.push(g);
    list.append(g.card);
    return g;
  }

  function setFiles(g, files) {
    for (const t of g.thumbs.querySelectorAll("img")) URL.revokeObjectURL(t.src);
    g.files = files;
    g.count.textContent = `${files.length} image${files.length === 1 ? "" : "s"}`;
    replaceKeepingFocus(
      g.thumbs,
      files.slice(0, MAX_THUMBS).map((f) => el("img", { src: URL.createObjectURL(f.blob), alt: f.name, class: "thumb" })),
    );
    g.errorSlot.replaceChildren();
  }

  async function loadDemo() {
    status.textContent = "loading demo groups…";
    try {
      while (groups.length) groups.pop().card.remove();
      for (const colour of ["red", "blue"]) {
        const base = new URL(`demo/probe/${colour}/`, ctx.assetBase);
        const index = await fetchJson(new URL("index.json", base));
        const files = await Promise.all(
          index.map(async (e) => ({ name: e.file, blob: await fetchBlob(new URL(e.file, base)) })),
        );
        setFiles(addGroup(colour, colour), files);
      }
      status.textContent = "demo groups loaded: single-object scenes by colour, prompts “red” and “blue”";
    } catch (err) {
      status.textContent = "";
      results.replaceChildren(errorBox(err.message));
    }
  }

  function renderReport(report) {
    const out = [];
    if (report.skipped?.length) {
      out.push(el("p", { class: "warning", role: "alert" }, `Skipped ${report.skipped.length} unreadable image(s): `, report.skipped.join("; ")));
    }
    for (const g of report.groups) {
      const rows = g.accuracy.map((a) =>
        el(
          "tr",
          {},
          el("th", { scope: "row", text: a.variant }),
          el("td", { text: `${a.correct}/${a.total}` }),
          el("td", {}, bar(a.accuracy, 1, `accuracy ${fmt(a.accuracy, 2)}`), " ", fmt(a.accuracy, 2)),
          el("td", { text: `[${fmt(a.ci95[0], 2)}, ${fmt(a.ci95[1], 2)}]` }),
        ),
      );
      const movers = g.movers.map((m) =>
        el(
          "li",
          {},
          el("button", { type: "button", class: "link", text: `#${m.feature}`, onclick: () => ctx.openFeature?.(m.feature) }),
          " ",
          classBadge(m.class),
          ` margin ${m.delta_margin >= 0 ? "+" : ""}${fmt(m.delta_margin, 4)} (active on ${m.active_on})`,
        ),
      );
      out.push(
        el(
          "div",
          { class: "probe-group-result", dataset: { group: g.name } },
          el("h3", {}, `${g.name} — expected “`, g.expected, "”"),
          el(
            "table",
            { class: "probe-table" },
            el("caption", { text: "Zero-shot accuracy with a 95% bootstrap interval" }),
            el("thead", {}, el("tr", {}, ["variant", "correct", "accuracy", "95% CI"].map((h) => el("th", { scope: "col", text: h })))),
            el("tbody", {}, rows),
          ),
          el("p", { class: "muted", text: "Features whose removal alone moves this group most (change of the margin):" }),
          el("ul", { class: "movers" }, movers),
        ),
      );
    }
    replaceKeepingFocus(results, out);
  }

  async function run() {
    results.replaceChildren();
    const usable = groups.filter((g) => g.files.length);
    let bad = false;
    for (const g of groups) {
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
    if (usable.length < 2 || bad) {
      if (groups.length < 2) results.append(errorBox("the probe needs at least two groups"));
      return;
    }
    runButton.disabled = true;
    status.textContent = "embedding images…";
    try {
      const images = [];
      const groupOf = [];
      for (const [i, g] of groups.entries()) {
        for (const f of g.files) {
          images.push(await f.blob.arrayBuffer());
          groupOf.push(i);
        }
      }
      const request = JSON.stringify({
        prompts: groups.map((g) => g.prompt.value),
        names: groups.map((g) => g.name.value || "group"),
      });
      const json = await ctx.call("probe", { request, images, groups: groupOf }, {
        transfer: images,
        onProgress: (d, t) => progress.set(d, t, `embedded ${d} / ${t} images`),
      });
      const report = JSON.parse(json);
      ctx.result.probe = report;
      renderReport(report);
      status.textContent = "done";
    } catch (err) {
      status.textContent = "";
      results.append(errorBox(err.message));
    } finally {
      progress.hide();
      runButton.disabled = false;
    }
  }

  runButton.addEventListener("click", run);
  addButton.addEventListener("click", () => addGroup());
  demoButton.addEventListener("click", loadDemo);
  addGroup("group 1", "a photo of a man");
  addGroup("group 2", "a photo of a woman");
  root.replaceChildren(
    el("p", { class: "muted" }, "Zero-shot classify groups of images from the CLIP embedding, the dictionary reconstruction, and the reconstruction without ImgD, TextD or CrossD features (SPEC §4.1). Group i should match prompt i."),
    list,
    el("div", { class: "app-actions" }, addButton, ctx.isDemo() ? demoButton : null, runButton),
    progress.row,
    status,
    results,
  );
  return { loadDemo, run };
}

// ---------------------------------------------------------------------------------------
// Attack.

function mountAttack(root, ctx) {
  let image = null; // {name, blob}
  let running = false;
  let cancelled = false;
  const preview = el("img", { class: "thumb", alt: "image to attack", hidden: true });
  const imageName = el("span", { class: "muted", text: "no image chosen" });
  const fileInput = el("input", { type: "file", accept: "image/*", aria: { label: "image to attack" } });
  const imageError = el("div");
  const labels = el("textarea", { rows: 6, aria: { label: "zero-shot labels, one per line" } });
  const target = el("select", { aria: { label: "target label" } });
  const eps = el("input", { type: "number", min: 0.5, max: 64, step: 0.5, value: 4, aria: { label: "epsilon in 1/255 units" } });
  const steps = el("input", { type: "number", min: 1, max: 500, step: 1, value: 10, aria: { label: "PGD steps" } });
  const objective = el(
    "select",
    { aria: { label: "objective" } },
    ["embedding", "ImgD", "TextD", "CrossD"].map((o) =>
      el("option", { value: o, text: o === "embedding" ? "whole embedding" : `${o} features only` }),
    ),
  );
  const runButton = el("button", { type: "button", text: "Run attack", dataset: { testid: "attack-run" } });
  const cancelButton = el("button", { type: "button", text: "Cancel", disabled: true });
  const progress = progressRow();
  const status = el("p", { class: "app-status", role: "status" });
  const results = el("div", { class: "attack-results" });

  function setLabels(lines) {
    labels.value = lines.join("\n");
    syncTargets();
  }
  function labelList() {
    return labels.value
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
  }
  function syncTargets() {
    const keep = target.value;
    target.replaceChildren(
      el("option", { value: "", text: "nearest wrong label" }),
      labelList().map((l, i) => el("option", { value: String(i), text: l })),
    );
    if ([...target.options].some((o) => o.value === keep)) target.value = keep;
  }
  labels.addEventListener("input", syncTargets);

  function setImage(name, blob) {
    image = { name, blob };
    imageName.textContent = name;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.hidden = false;
    imageError.replaceChildren();
  }
  fileInput.addEventListener("change", () => {
    const f = fileInput.files?.[0];
    fileInput.value = "";
    if (f) setImage(f.name, f);
  });
  const demoButton = el("button", {
    type: "button",
    text: "Use a demo image",
    onclick: async () => {
      try {
        setImage("scene-1.png (demo)", await fetchBlob(new URL("demo/images/scene-1.png", ctx.assetBase)));
        setLabels(DEMO_COLOURS.map((c) => `a ${c} square`));
      } catch (err) {
        imageError.replaceChildren(errorBox(err.message));
      }
    },
  });

  function renderResult(r) {
    const rep = JSON.parse(r.report);
    ctx.result.attack = rep;
    const side = r.side;
    const shift = rep.class_shift_per_feature;
    const maxShift = Math.max(...shift.slice(0, 3), 1e-12);
    replaceKeepingFocus(
      results,
      el(
        "div",
        { class: "attack-images" },
        figure(rgbaCanvas(r.clean, side, "clean image"), "clean"),
        figure(rgbaCanvas(r.adversarial, side, "adversarial image"), "adversarial"),
        figure(rgbaCanvas(r.difference, side, "difference, amplified"), `difference (×${fmt(0.5 / (Number(eps.value) / 255), 0)})`),
      ),
      el(
        "dl",
        { class: "attack-report", dataset: { success: String(rep.success) } },
        el("dt", { text: "clean prediction" }),
        el("dd", { text: rep.clean }),
        el("dt", { text: "adversarial prediction" }),
        el("dd", { text: rep.adversarial }),
        el("dt", { text: "target" }),
        el("dd", { text: rep.target }),
        el("dt", { text: "success" }),
        el("dd", { class: rep.success ? "ok" : "warning", text: rep.success ? "yes" : "no" }),
        el("dt", { text: "perturbation" }),
        el("dd", { text: `L∞ ${fmt(rep.linf * 255, 2)}/255 · L2 ${fmt(rep.l2, 3)}` }),
        el("dt", { text: "similarity to the target" }),
        el("dd", { text: `${fmt(rep.clean_similarity)} → ${fmt(rep.adversarial_similarity)}` }),
        el("dt", { text: "defense: without ImgD" }),
        el("dd", { text: `${rep.defended_without_imgd}${rep.restored_without_imgd ? " (clean prediction restored)" : ""}` }),
        el("dt", { text: "defense: without TextD" }),
        el("dd", { text: `${rep.defended_without_textd}${rep.restored_without_textd ? " (clean prediction restored)" : ""}` }),
      ),
      el("h3", { text: "Which feature classes moved (mean |Δ activation| per feature)" }),
      el(
        "ul",
        { class: "class-shift" },
        ["ImgD", "TextD", "CrossD"].map((c, i) =>
          el("li", {}, classBadge(c), " ", bar(shift[i], maxShift, `${c} ${fmt(shift[i], 5)}`), " ", fmt(shift[i], 5)),
        ),
      ),
    );
  }

  async function run() {
    results.replaceChildren();
    if (!image) {
      imageError.replaceChildren(errorBox("choose an image first"));
      return;
    }
    const list = labelList();
    if (list.length < 2) {
      results.append(errorBox("give at least two labels, one per line"));
      return;
    }
    const e = Number(eps.value);
    const n = Math.round(Number(steps.value));
    if (!(e > 0 && e <= 255) || !(n >= 1 && n <= 500)) {
      results.append(errorBox("epsilon must be in (0, 255] (in 1/255 units) and steps in 1..500"));
      return;
    }
    running = true;
    cancelled = false;
    runButton.disabled = true;
    cancelButton.disabled = false;
    status.textContent = "starting…";
    const t0 = performance.now();
    try {
      const bytes = await image.blob.arrayBuffer();
      const request = JSON.stringify({
        labels: list,
        target: target.value === "" ? null : Number(target.value),
        eps: e / 255,
        steps: n,
        objective: objective.value,
      });
      const begun = await ctx.call("attack_begin", { bytes, request }, { transfer: [bytes] });
      let step = 0;
      while (step < begun.steps) {
        if (cancelled) break;
        const s = await ctx.call("attack_step");
        step = s.step;
        progress.set(step, begun.steps, `step ${step} / ${begun.steps} · objective ${fmt(s.objective)} · ${ctx.backend()}`);
        ctx.result.attackSteps = step;
      }
      if (cancelled) {
        await ctx.call("attack_cancel");
        status.textContent = `cancelled after ${step} step(s)`;
        ctx.result.attackCancelled = true;
        return;
      }
      status.textContent = "evaluating…";
      renderResult(await ctx.call("attack_finish"));
      status.textContent = `done in ${fmt((performance.now() - t0) / 1000, 1)} s on ${ctx.backend()}`;
    } catch (err) {
      status.textContent = "";
      results.append(errorBox(err.message));
    } finally {
      running = false;
      progress.hide();
      runButton.disabled = false;
      cancelButton.disabled = true;
    }
  }

  runButton.addEventListener("click", run);
  cancelButton.addEventListener("click", () => {
    if (running) {
      cancelled = true;
      status.textContent = "cancelling after this step…";
    }
  });
  setLabels(ctx.isDemo() ? DEMO_COLOURS.map((c) => `a ${c} square`) : ["a photo of a cat", "a photo of a dog"]);
  root.replaceChildren(
    el("p", { class: "muted" }, "PGD on the pixels (L∞ ball) pulls the image toward a target prompt, on the whole embedding or one feature class only; then: which classes moved, and whether removing ImgD or TextD features restores the clean prediction (SPEC §4.2)."),
    el("div", { class: "attack-input" }, el("label", {}, "Image ", fileInput), ctx.isDemo() ? demoButton : null, preview, imageName, imageError),
    el("label", { class: "block" }, "Labels (one per line)", labels),
    el(
      "div",
      { class: "app-options" },
      el("label", {}, "Target ", target),
      el("label", {}, "ε (/255) ", eps),
      el("label", {}, "Steps ", steps),
      el("label", {}, "Objective ", objective),
    ),
    el("div", { class: "app-actions" }, runButton, cancelButton),
    progress.row,
    status,
    results,
  );
  return { run, cancel: () => cancelButton.click(), useDemo: () => demoButton.click() };
}

// ---------------------------------------------------------------------------------------
// Control.

function mountControl(root, ctx) {
  const prompt = el("input", { type: "text", value: "", maxlength: 1000, aria: { label: "prompt to edit" } });
  const sliders = {};
  const values = {};
  const sliderRows = ["ImgD", "TextD", "CrossD"].map((c) => {
    const input = el("input", { type: "range", min: 0, max: 3, step: 0.1, value: 1, aria: { label: `${c} scale` }, dataset: { cls: c } });
    const out = el("output", { text: "1.0" });
    input.addEventListener("input", () => {
      out.textContent = Number(input.value).toFixed(1);
      schedule();
    });
    sliders[c] = input;
    values[c] = out;
    return el("label", { class: "slider-row" }, classBadge(c), " ", input, " ×", out);
  });
  const reset = el("button", {
    type: "button",
    text: "Reset scales",
    onclick: () => {
      for (const c of Object.keys(sliders)) {
        sliders[c].value = 1;
        values[c].textContent = "1.0";
      }
      schedule();
    },
  });
  const exportSt = el("button", { type: "button", text: "Download .safetensors", disabled: true });
  const exportNpy = el("button", { type: "button", text: "Download .npy", disabled: true });
  const status = el("p", { class: "app-status", role: "status" });
  const images = el("div", { class: "control-images" });
  const changes = el("div", { class: "control-changes" });
  let timer = null;
  let latest = 0;
  let last = null; // {embedding, text, scales}
  let decoderFor = null; // the engine `ready` promise the decoder was loaded into

  function scales() {
    return { class: [Number(sliders.ImgD.value), Number(sliders.TextD.value), Number(sliders.CrossD.value), 1], features: [] };
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(update, CONTROL_DEBOUNCE_MS);
  }

  async function ensureDecoder() {
    if (!ctx.isDemo()) return;
    const ready = ctx.engineReady();
    if (decoderFor === ready) return;
    const base = new URL("demo/decoder/", ctx.assetBase);
    const [config, weights] = await Promise.all([fetchBlob(new URL("decoder.json", base)), fetchBlob(new URL("decoder.safetensors", base))]);
    await ctx.call("load_decoder", { config, weights });
    decoderFor = ready;
  }

  async function update() {
    const id = ++latest;
    const text = prompt.value;
    if (!text.trim()) {
      changes.replaceChildren(errorBox("type a prompt to edit"));
      return;
    }
    try {
      await ensureDecoder();
      const sc = scales();
      const r = await ctx.call("control", { text, scales: sc });
      if (id !== latest) return;
      last = { embedding: r.embedding, text, scales: sc };
      exportSt.disabled = false;
      exportNpy.disabled = false;
      let dot = 0;
      for (let i = 0; i < r.embedding.length; i++) dot += r.embedding[i] * r.original[i];
      ctx.result.control = { cosine: dot, side: r.side ?? null, image_after: r.image_after ? Array.from(r.image_after) : null };
      if (r.image_after) {
        replaceKeepingFocus(
          images,
          figure(rgbaCanvas(r.image_before, r.side, "decoded from the original prompt"), "original"),
          figure(rgbaCanvas(r.image_after, r.side, "decoded from the edited prompt"), "edited"),
        );
      } else {
        images.replaceChildren(el("p", { class: "muted", text: "No image decoder for this model: export the edited embedding for an unCLIP-style generator (see README)." }));
      }
      const diff = [];
      for (let k = 0; k < r.before.length; k++) {
        if (r.before[k] !== r.after[k]) diff.push([k, r.before[k], r.after[k]]);
      }
      diff.sort((a, b) => Math.abs(b[2] - b[1]) - Math.abs(a[2] - a[1]));
      replaceKeepingFocus(
        changes,
        el("p", { text: `cosine(edited, original) = ${fmt(dot, 4)} · ${diff.length} active feature(s) rescaled` }),
        el(
          "ul",
          { class: "control-diff" },
          diff.slice(0, 8).map(([k, b, a]) =>
            el(
              "li",
              {},
              el("button", { type: "button", class: "link", text: `#${k}`, onclick: () => ctx.openFeature?.(k) }),
              " ",
              classBadge(ctx.featureClass(k)),
              ` ${fmt(b)} → ${fmt(a)}`,
            ),
          ),
        ),
      );
      status.textContent = "";
    } catch (err) {
      if (id !== latest) return;
      changes.replaceChildren(errorBox(err.message));
    }
  }

  async function doExport(format) {
    if (!last) return;
    try {
      const name = last.text.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "edited";
      if (format === "npy") {
        const bytes = await ctx.call("export_embedding", { embedding: last.embedding, format: "npy" });
        download(bytes, `${name}.npy`, "application/octet-stream");
      } else {
        const metadata = JSON.stringify({ prompt: last.text, scales: JSON.stringify(last.scales) });
        const bytes = await ctx.call("export_embedding", { embedding: last.embedding, format: "safetensors", metadata });
        download(bytes, `${name}.safetensors`, "application/octet-stream");
      }
    } catch (err) {
      status.textContent = err.message;
    }
  }
  exportSt.addEventListener("click", () => doExport("safetensors"));
  exportNpy.addEventListener("click", () => doExport("npy"));
  prompt.addEventListener("input", schedule);
  prompt.value = ctx.isDemo() ? "a red circle" : "a photo of a dog";
  root.replaceChildren(
    el("p", { class: "muted" }, "Scale the prompt's features by class; the reconstruction residual is kept, so all scales at 1 give the original embedding (SPEC §4.3)."),
    el("label", { class: "block" }, "Prompt ", prompt),
    el("div", { class: "sliders" }, sliderRows),
    el("div", { class: "app-actions" }, reset, exportSt, exportNpy),
    status,
    images,
    changes,
  );
  return { update, setScale: (c, v) => {
    sliders[c].value = v;
    values[c].textContent = Number(v).toFixed(1);
    return update();
  } };
}

// ctx: {call(cmd, args, opts) -> Promise, engineReady() -> Promise, backend() -> string,
//       isDemo() -> bool, assetBase: URL, featureClass(id) -> class, openFeature(id), result: {}}
export function mountApplications(sections, ctx) {
  const api = {};
  if (sections.probe) api.probe = mountProbe(sections.probe, ctx);
  if (sections.attack) api.attack = mountAttack(sections.attack, ctx);
  if (sections.control) api.control = mountControl(sections.control, ctx);
  return api;
}
