// The page's own controls (image picker and drop zone, prompt form, re-run, the "Model and
// bundle" forms), which panels show, and the embed-mode height report to the widget.

import { $, state, views } from "./state.js";
import { fieldError } from "./status.js";
import { addImageFiles, addPrompt } from "./inputs.js";
import { pump, markAllPending } from "./queue.js";
import { loadModel, loadBundleOnly } from "./loading.js";
import { modelFromSpec, bundleFromSpec, hubModel, hubBundle, localModel } from "./models.js";
import * as sources from "../sources.js";

function wireImagePicker() {
  const input = $("image-input");
  input.addEventListener("change", () => {
    const files = Array.from(input.files || []);
    input.value = ""; // choosing the same file again still fires "change"
    addImageFiles(files);
  });
}

function wireDropZone() {
  const zone = $("dropzone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (ev) => {
      ev.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    addImageFiles(ev.dataTransfer && ev.dataTransfer.files);
  });
}

function wirePromptForm() {
  $("prompt-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const box = $("new-prompt");
    if (addPrompt(box.value)) {
      box.value = "";
      fieldError("prompt-form-error", null);
    } else {
      fieldError("prompt-form-error", "type a prompt first");
    }
  });
  $("rerun").addEventListener("click", () => {
    markAllPending();
    pump();
  });
}

function wireBuiltinForm() {
  $("builtin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const spec = sources.parseModelSpec($("builtin-model").value);
    loadModel(modelFromSpec(spec), bundleFromSpec(sources.parseBundleSpec("", spec)), "builtin-error");
  });
}

function wireHubForm() {
  $("hub-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const repo = $("hub-repo").value.trim();
    if (!sources.validRepo(repo)) {
      fieldError("hub-error", `"${repo}" is not a repo id: use owner/name, e.g. ${sources.DEFAULT_HUB_REPO}`);
      return;
    }
    loadModel(hubModel(repo), null, "hub-error");
  });
  $("hub-bundle-load").addEventListener("click", () => {
    const repo = $("hub-bundle-repo").value.trim();
    if (!sources.validRepo(repo)) {
      fieldError("hub-error", `"${repo}" is not a repo id: use owner/name`);
      return;
    }
    loadBundleOnly(hubBundle(repo));
  });
  $("hub-forget").addEventListener("click", async () => {
    const gone = await sources.forgetHubDownloads();
    $("hub-status").textContent = gone ? "Downloaded models removed from this browser." : "Nothing was stored.";
  });
}

// Runs classify(files) on a picker's files; a wrong set of files is reported on errorId.
function onFilesPicked(id, errorId, classify, use) {
  $(id).addEventListener("change", (ev) => {
    fieldError(errorId, null);
    let files;
    try {
      files = classify(ev.target.files);
    } catch (err) {
      fieldError(errorId, err.message);
      return;
    }
    use(files);
  });
}

function wireLocalFiles() {
  onFilesPicked("model-files", "model-error", sources.classifyModelFiles, (files) =>
    loadModel(localModel(files), null, "model-error"),
  );
  onFilesPicked("bundle-files", "bundle-error", sources.classifyBundleFiles, (files) =>
    loadBundleOnly({ label: `local files (${files.features.name})`, param: "", files: Promise.resolve(files) }),
  );
  $("bundle-none").addEventListener("click", () => loadBundleOnly(null));
}

export function wireControls() {
  wireImagePicker();
  wireDropZone();
  wirePromptForm();
  wireBuiltinForm();
  wireHubForm();
  wireLocalFiles();
  // Charts read colours from CSS; redraw them when the theme flips.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    views.dictionary.render();
  });
}

// Shows the panels the URL asks for (the model/bundle controls never in embed mode).
export function applyPanels() {
  document.body.classList.toggle("embed", state.embed);
  for (const section of document.querySelectorAll("section[data-panel]")) {
    const name = section.dataset.panel;
    section.hidden = !(name === "source" ? !state.embed : state.panels.includes(name));
  }
  for (const a of document.querySelectorAll(".views-nav a")) {
    const target = document.querySelector(a.getAttribute("href"));
    a.hidden = !target || target.hidden;
  }
}

// In embed mode, tell a same-site parent (the <monoscope-widget>) how tall the page is, so the
// iframe can fit it. targetOrigin = our origin: other sites never receive anything.
export function reportHeight() {
  if (!state.embed || window.parent === window) return;
  const send = () =>
    window.parent.postMessage({ type: "monoscope:height", height: document.documentElement.scrollHeight }, location.origin);
  new ResizeObserver(send).observe(document.body);
  send();
}
