// "Build a bundle" (issue 11): the user's own images and captions -> embeddings (the loaded
// model, in the engine worker) -> a TopK dictionary trained with monoscope's trainer -> the
// analysis -> a bundle loaded into the page and offered as a .zip. Embedded rows are kept in
// IndexedDB after every batch, so a reload (or Stop) resumes without redoing them. Nothing
// leaves the page.

import { el, fmt } from "../dom.js";
import { hubDictionaryFiles } from "../sources.js";
import { progressRow, download } from "../apps/common.js";
import { pairsFromFiles, droppedFiles } from "./pairs.js";
import { setKey, loadRows, appendRows, forgetRows } from "./store.js";
import { zipStored } from "./zip.js";
import { TrainChart } from "./chart.js";
import { saveBundle, exampleThumbs, thumbUrls } from "./saved.js";

const THUMBS_PER_FEATURE = 8; // as many example images as the feature page shows

const BATCH = 16; // pairs per worker round trip: progress stays live, memory bounded
const TRAIN_CHUNK = 50; // training steps per round trip (Stop is honoured between chunks)
const INTRO =
  "Pick a folder of images with same-name .txt captions (img2dataset / webdataset layout), a webdataset .tar shard, or a caption list (.tsv image<TAB>caption, .csv with image,caption columns, or COCO captions .json) together with its images. The loaded model embeds every pair here, a TopK dictionary is trained on them and analysed (MDS, classes, labels) as `monoscope extract / train / analyze --center` would; the result becomes the page's bundle. Nothing is uploaded.";

class Stopped extends Error {}

class BuildPanel {
  constructor(root, ctx) {
    this.ctx = ctx;
    this.running = false;
    this.stop = false;
    this.set = null; // {source, pairs, skipped} of the last pick
    this.folderInput = el("input", { type: "file", id: "build-folder", webkitdirectory: true, multiple: true, onchange: (e) => this.pick(e.target.files) });
    this.filesInput = el("input", { type: "file", id: "build-files", multiple: true, onchange: (e) => this.pick(e.target.files) });
    this.dictInput = el("input", { type: "file", id: "build-dict", multiple: true, accept: ".json,.safetensors", onchange: (e) => this.pickDictionary(e.target.files) });
    this.centerBox = el("input", { type: "checkbox", id: "build-center", checked: true });
    this.dictRepo = el("input", { type: "text", id: "build-dict-repo", placeholder: "owner/name or owner/name/folder", spellcheck: false });
    this.dictStatus = el("p", { class: "hint", id: "build-dict-status", role: "status" });
    const dictHub = el("button", { type: "button", id: "build-dict-hub", text: "Download dictionary", onclick: () => this.hubDictionary() });
    this.dict = null;
    this.startButton = el("button", { type: "button", id: "build-start", text: "Build bundle", disabled: true, onclick: () => this.run() });
    this.stopButton = el("button", { type: "button", id: "build-stop", text: "Stop", disabled: true, onclick: () => (this.stop = true) });
    this.forgetButton = el("button", { type: "button", id: "build-forget", class: "secondary", text: "Start over (forget stored rows)", disabled: true, onclick: () => this.forget() });
    this.progress = progressRow();
    this.status = el("p", { class: "app-status", id: "build-status", role: "status" });
    this.chart = el("p", { class: "build-train", id: "build-train", role: "status" });
    this.plot = new TrainChart();
    this.errors = el("p", { class: "error", id: "build-error", role: "alert", hidden: true });
    this.out = el("div", { class: "build-out" });
    const drop = el("div", { class: "build-drop", id: "build-drop", text: "Drop a folder, a .tar shard or files here" });
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", async (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (!this.running) this.pick(await droppedFiles(e.dataTransfer));
    });
    root.replaceChildren(
      el("p", { class: "muted" }, INTRO),
      drop,
      el("label", { for: "build-folder", text: "Folder" }),
      this.folderInput,
      el("label", { for: "build-files", text: "or files (images + .txt captions, one .tar shard, or a .tsv / .csv / COCO .json list with its images)" }),
      this.filesInput,
      el(
        "details",
        { class: "build-dict" },
        el("summary", { text: "Use an existing dictionary instead of training" }),
        el("label", { for: "build-dict", text: "dict.json + dictionary.safetensors (monoscope), or cfg.json + sae_weights.safetensors (SAELens)" }),
        this.dictInput,
        el("label", { for: "build-dict-repo", text: "or from the Hugging Face hub (downloaded only when you press the button)" }),
        this.dictRepo,
        dictHub,
        this.dictStatus,
        el("label", {}, this.centerBox, " analyse centred embeddings (dictionaries from `monoscope train --center`)"),
      ),
      el("div", { class: "app-actions" }, this.startButton, this.stopButton, this.forgetButton),
      this.progress.row,
      this.status,
      this.chart,
      this.plot.canvas,
      this.errors,
      this.out,
    );
  }

  fail(message) {
    this.errors.textContent = message;
    this.errors.hidden = !message;
  }

  async pick(files) {
    this.fail(null);
    this.set = null;
    this.startButton.disabled = true;
    try {
      const set = await pairsFromFiles(files, (name, bytes) => this.ctx.call("parse_captions", { name, bytes }));
      if (!set.pairs.length) throw new Error(`no image-caption pairs found (${set.skipped.slice(0, 3).join("; ") || "no images"})`);
      this.set = set;
      const note = set.skipped.length ? `, ${set.skipped.length} skipped (${set.skipped.slice(0, 2).join("; ")}${set.skipped.length > 2 ? "; …" : ""})` : "";
      this.status.textContent = `${set.source}: ${set.pairs.length} pairs${note}`;
      this.startButton.disabled = this.running;
      this.forgetButton.disabled = this.running;
    } catch (err) {
      this.fail(err.message);
    }
  }

  // A dictionary to analyse instead of training one: {config, weights, saelens}.
  pickDictionary(fileList) {
    this.fail(null);
    this.dict = null;
    const files = Array.from(fileList || []);
    if (!files.length) return;
    const find = (name) => files.find((f) => f.name === name);
    const own = find("dict.json");
    const sae = find("cfg.json");
    const config = own || sae;
    const weights = own ? find("dictionary.safetensors") : find("sae_weights.safetensors");
    if (!config || !weights) {
      this.fail(`dictionary: pick dict.json + dictionary.safetensors, or cfg.json + sae_weights.safetensors (picked: ${files.map((f) => f.name).join(", ")})`);
      return;
    }
    this.useDictionary({ config, weights, saelens: !own }, "picked files");
  }

  useDictionary(dict, from) {
    this.dict = dict;
    this.centerBox.checked = !dict.saelens;
    this.dictStatus.textContent = `${dict.saelens ? "SAELens" : "monoscope"} dictionary from ${from}: training will be skipped`;
  }

  async hubDictionary() {
    this.fail(null);
    const spec = this.dictRepo.value.trim();
    this.dictStatus.textContent = `${spec}: downloading…`;
    try {
      const dict = await hubDictionaryFiles(spec, ({ loaded, total }) => {
        this.dictStatus.textContent = `${spec}: ${fmt(loaded / 1e6, 1)}${total ? ` of ${fmt(total / 1e6, 1)}` : ""} MB`;
      });
      this.useDictionary(dict, `hf:${spec}`);
    } catch (err) {
      this.dictStatus.textContent = "";
      this.fail(err.message);
    }
  }

  key() {
    return setKey(this.ctx.modelKey(), this.set.source, this.set.pairs);
  }

  async forget() {
    if (!this.set) return;
    await forgetRows(this.key());
    this.status.textContent = `${this.set.source}: stored rows forgotten`;
  }

  busy(on) {
    this.running = on;
    this.startButton.disabled = on || !this.set;
    this.forgetButton.disabled = on || !this.set;
    this.stopButton.disabled = !on;
    this.folderInput.disabled = on;
    this.filesInput.disabled = on;
  }

  checkStop() {
    if (this.stop) throw new Stopped("stopped");
  }

  // Stored rows first, then the rest in batches; returns {restored, embedded, skipped, seconds}.
  async extract(key, pairs) {
    const call = this.ctx.call;
    let restored = 0;
    const done = new Set();
    const stored = await loadRows(key);
    for (const b of stored) {
      await call("build_restore", b);
      restored += b.ids.length;
      for (const id of b.ids) done.add(id);
    }
    const todo = pairs.filter((p) => !done.has(p.id));
    const skipped = [];
    const t0 = performance.now();
    let embedded = 0;
    const total = pairs.length;
    let index = stored.length; // batches stored so far
    for (let i = 0; i < todo.length; i += BATCH) {
      this.checkStop();
      const batch = todo.slice(i, i + BATCH);
      const images = await Promise.all(batch.map((p) => p.blob.arrayBuffer()));
      const meta = { ids: batch.map((p) => p.id), names: batch.map((p) => p.name), captions: batch.map((p) => p.caption) };
      const r = await call("build_add", { meta, images }, { transfer: images });
      skipped.push(...r.skipped);
      await appendRows(key, index++, { ids: Array.from(r.rows.ids), names: r.rows.names, captions: r.rows.captions, image: r.rows.image, text: r.rows.text });
      embedded += batch.length;
      const secs = (performance.now() - t0) / 1000;
      const rate = embedded / secs;
      const left = todo.length - embedded;
      this.progress.set(restored + embedded, total, `extracting: ${restored + embedded} / ${total} pairs · ${fmt(rate, 1)} pairs/s · about ${Math.ceil(left / rate)} s left${restored ? ` (${restored} restored)` : ""}`);
      this.ctx.result.build = { phase: "extract", restored, embedded, total };
    }
    return { restored, embedded, skipped, seconds: (performance.now() - t0) / 1000 };
  }

  async train() {
    const call = this.ctx.call;
    const settings = await call("build_settings");
    await call("build_train_start", { settings });
    const t0 = performance.now();
    this.plot.reset();
    let st = null;
    do {
      this.checkStop();
      st = await call("build_train", { steps: TRAIN_CHUNK });
      this.plot.add(st);
      const rate = st.step / ((performance.now() - t0) / 1000);
      this.progress.set(st.step, st.steps, `training: step ${st.step} / ${st.steps} · ${fmt(rate, 0)} steps/s`);
      this.chart.textContent = `FVU image ${fmt(st.fvu[0], 3)} · text ${fmt(st.fvu[1], 3)} · dead latents ${fmt(100 * st.dead_fraction, 1)}%`;
      this.ctx.result.build = { ...this.ctx.result.build, phase: "train", status: st };
    } while (st.step < st.steps);
    return { settings, status: st, seconds: (performance.now() - t0) / 1000 };
  }

  async run() {
    if (!this.set || this.running) return;
    this.fail(null);
    this.out.replaceChildren();
    this.stop = false;
    this.busy(true);
    const call = this.ctx.call;
    const { source, pairs } = this.set;
    const key = this.key();
    try {
      this.ctx.result.build = { phase: "begin" };
      await call("build_begin", { source });
      const ex = await this.extract(key, pairs);
      let tr = { settings: null, status: null, seconds: 0 };
      if (this.dict) {
        await call("build_use_dictionary", { ...this.dict, center: this.centerBox.checked });
      } else {
        tr = await this.train();
      }
      this.checkStop();
      this.progress.set(0, 1, "analysing: MDS, classes, labels…");
      this.ctx.result.build = { ...this.ctx.result.build, phase: "analyse" };
      const t0 = performance.now();
      const files = await call("build_finish", { model: this.ctx.modelLabel() });
      const analyseSeconds = (performance.now() - t0) / 1000;
      await forgetRows(key);
      this.progress.hide();
      const label = `built here (${source})`;
      const blobs = {
        manifest: new Blob([files.manifest], { type: "application/json" }),
        features: new Blob([files.features], { type: "application/json" }),
        dictionary: new Blob([files.dictionary], { type: "application/octet-stream" }),
      };
      const featuresDoc = JSON.parse(new TextDecoder().decode(files.features));
      const thumbs = await exampleThumbs(featuresDoc, pairs, THUMBS_PER_FEATURE);
      const kept = ex.restored + ex.embedded - ex.skipped.length;
      try {
        await saveBundle({ label, created: Date.now(), pairs: kept, files: blobs, thumbs });
      } catch (err) {
        this.fail(`the bundle could not be kept in this browser (${err.message}); download it below`);
      }
      this.ctx.onSaved?.();
      await this.ctx.useBundle(blobs, label, thumbUrls(thumbs));
      const summary = {
        phase: "done",
        pairs: kept,
        thumbs: Object.keys(thumbs).length,
        restored: ex.restored,
        embedded: ex.embedded,
        skipped: ex.skipped,
        settings: tr.settings,
        status: tr.status,
        seconds: { extract: ex.seconds, train: tr.seconds, analyse: analyseSeconds },
        manifest: JSON.parse(new TextDecoder().decode(files.manifest)),
        classes: featuresDoc.features.map((f) => f.class),
      };
      this.ctx.result.build = summary;
      this.status.textContent = `bundle built from ${summary.pairs} pairs (${ex.skipped.length} skipped) and loaded: extraction ${fmt(ex.seconds, 1)} s, training ${fmt(tr.seconds, 1)} s, analysis ${fmt(analyseSeconds, 1)} s`;
      const zip = () =>
        download(
          zipStored([
            { name: "bundle/manifest.json", bytes: files.manifest },
            { name: "bundle/features.json", bytes: files.features },
            { name: "bundle/dictionary.safetensors", bytes: files.dictionary },
          ]),
          "monoscope-bundle.zip",
          "application/zip",
        );
      this.out.replaceChildren(el("button", { type: "button", id: "build-download", text: "Download bundle (.zip)", onclick: zip }));
    } catch (err) {
      this.progress.hide();
      await call("build_cancel").catch(() => {});
      if (err instanceof Stopped) {
        this.status.textContent = "stopped; the embedded rows are kept in this browser: build again to resume";
        this.ctx.result.build = { ...this.ctx.result.build, phase: "stopped" };
      } else {
        this.fail(err.message || String(err));
        this.ctx.result.build = { ...this.ctx.result.build, phase: "error", error: err.message };
      }
    } finally {
      this.busy(false);
    }
  }
}

// ctx: {call(cmd, args, opts), modelLabel(), modelKey(), useBundle(blobs, label, thumbs),
//       onSaved(), result: {}}
export function mountBuild(root, ctx) {
  const panel = new BuildPanel(root, ctx);
  return { pick: (files) => panel.pick(files), run: () => panel.run(), stop: () => (panel.stop = true) };
}
