// Per input: its most active dictionary features (class badge, activation bar, MDS, label).

import { el, replaceKeepingFocus } from "../dom.js";
import { featureRow, topActive, inputTitle, emptyNote } from "./common.js";

export function renderFeatures(container, app) {
  const { state } = app;
  const inputs = [...state.images, ...state.prompts];
  if (!inputs.length) {
    replaceKeepingFocus(container, emptyNote("Add an image or a prompt to see its features."));
    return;
  }
  const cards = inputs.map((item) => {
    const head = el("h3", { class: "card-title" }, el("span", { class: "kind", text: item.kind === "image" ? "image" : "prompt" }), inputTitle(item));
    let body;
    if (item.status === "error") {
      body = el("p", { class: "error", text: `not analysed: ${item.error}` });
    } else if (item.status !== "ok") {
      body = el("p", { class: "hint", text: "analysing…" });
    } else if (!item.activations) {
      const v = Array.from(item.embedding.slice(0, 6), (x) => x.toFixed(3)).join(", ");
      body = el("p", { class: "hint", text: `No bundle loaded, so no features; embedding (dim ${item.embedding.length}): [${v}, …]. To see features, make one for this model with extract, train and analyze (README, "Your own model"), then open it under Model and bundle: local files, or a hub repo (bundle=hf:owner/name).` });
    } else {
      const ids = topActive(item.activations);
      const max = ids.length ? item.activations[ids[0]] : 0;
      const active = topActive(item.activations, 0).length;
      body = [
        ids.length
          ? el("ol", { class: "feature-rows" }, ids.map((id) => featureRow(app, id, item.activations[id], max, item.key)))
          : emptyNote("No feature is active for this input."),
        el("p", { class: "hint", text: `${active} active feature${active === 1 ? "" : "s"}; top ${ids.length} shown${item.truncated ? " · prompt truncated to the model's context" : ""}` }),
      ];
    }
    return el("article", { class: "input-card", dataset: { key: item.key, status: item.status } }, head, body);
  });
  replaceKeepingFocus(container, cards);
}
