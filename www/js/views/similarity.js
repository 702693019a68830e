// Image <-> prompt: the cosine similarity matrix (a table of buttons, so every cell is reachable
// by keyboard), and for the chosen pair the features both share and those only one side has.

import { el, replaceKeepingFocus, classBadge, fmt, bar } from "../dom.js";
import { cosine, featureButton, inputTitle, emptyNote } from "./common.js";

const PAIR_ROWS = 10;

export function renderSimilarity(container, app) {
  const { state } = app;
  const images = state.images.filter((x) => x.status === "ok");
  const prompts = state.prompts.filter((x) => x.status === "ok");
  if (!images.length || !prompts.length) {
    replaceKeepingFocus(container, emptyNote("Needs at least one analysed image and one analysed prompt."));
    return;
  }
  const sims = images.map((im) => prompts.map((p) => cosine(im.embedding, p.embedding)));
  const flat = sims.flat();
  const lo = Math.min(...flat);
  const hi = Math.max(...flat);
  let pair = state.pair;
  if (!pair || !images.some((x) => x.key === pair.image) || !prompts.some((x) => x.key === pair.prompt)) {
    pair = { image: images[0].key, prompt: prompts[0].key };
  }

  const table = el(
    "table",
    { class: "sim-table" },
    el("caption", { text: "Cosine similarity of the CLIP embeddings (rows: images, columns: prompts). Choose a cell to compare the pair's features." }),
    el(
      "thead",
      {},
      el("tr", {}, el("th", { scope: "col", text: "image \\ prompt" }), prompts.map((p) => el("th", { scope: "col" }, el("q", { text: p.text })))),
    ),
    el(
      "tbody",
      {},
      images.map((im, i) =>
        el(
          "tr",
          {},
          el("th", { scope: "row" }, inputTitle(im)),
          prompts.map((p, j) => {
            const v = sims[i][j];
            const selected = pair.image === im.key && pair.prompt === p.key;
            // Colour strength: position within this matrix's range (CLIP cosines sit in a narrow band).
            const t = hi > lo ? (v - lo) / (hi - lo) : 1;
            return el(
              "td",
              {},
              el("button", {
                type: "button",
                class: "sim-cell",
                text: v.toFixed(3),
                dataset: { focusKey: `sim-${im.key}-${p.key}`, image: im.key, prompt: p.key },
                aria: { pressed: String(selected), label: `${im.name} and "${p.text}": cosine ${v.toFixed(3)}` },
                style: { "--strength": `${Math.round(15 + 70 * t)}%` },
                onclick: () => app.selectPair(im.key, p.key),
              }),
            );
          }),
        ),
      ),
    ),
  );

  const im = images.find((x) => x.key === pair.image);
  const p = prompts.find((x) => x.key === pair.prompt);
  const detail = el(
    "div",
    { class: "pair-detail", aria: { live: "polite" } },
    el("h3", {}, "Pair: ", inputTitle(im), " and ", inputTitle(p), ` · cosine ${cosine(im.embedding, p.embedding).toFixed(4)}`),
    pairFeatures(app, im, p),
  );
  replaceKeepingFocus(container, el("div", { class: "table-scroll" }, table), detail);
}

function pairFeatures(app, im, p) {
  if (!im.activations || !p.activations) return emptyNote("Load a bundle to compare features.");
  const a = im.activations;
  const b = p.activations;
  const shared = [];
  const onlyImage = [];
  const onlyText = [];
  for (let k = 0; k < a.length; k++) {
    if (a[k] > 0 && b[k] > 0) shared.push(k);
    else if (a[k] > 0) onlyImage.push(k);
    else if (b[k] > 0) onlyText.push(k);
  }
  // Shared features ranked by the weaker side: what the pair has most in common.
  shared.sort((x, y) => Math.min(a[y], b[y]) - Math.min(a[x], b[x]));
  onlyImage.sort((x, y) => a[y] - a[x]);
  onlyText.sort((x, y) => b[y] - b[x]);
  let max = 0;
  for (let k = 0; k < a.length; k++) max = Math.max(max, a[k], b[k]);
  const list = (title, ids, scope) =>
    el(
      "section",
      { class: `pair-list pair-${scope}` },
      el("h4", { text: `${title} (${ids.length})` }),
      ids.length
        ? el(
            "table",
            { class: "pair-table" },
            el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "class" }), el("th", { scope: "col", text: "feature" }), el("th", { scope: "col", text: "image" }), el("th", { scope: "col", text: "prompt" }))),
            el(
              "tbody",
              {},
              ids.slice(0, PAIR_ROWS).map((k) =>
                el(
                  "tr",
                  { dataset: { feature: String(k) } },
                  el("td", {}, classBadge(app.state.bundle?.byId.get(k)?.class)),
                  el("td", {}, featureButton(app, k, `pair-${scope}`)),
                  el("td", {}, bar(a[k], max, `image activation ${fmt(a[k])}`), el("span", { class: "num", text: fmt(a[k]) })),
                  el("td", {}, bar(b[k], max, `prompt activation ${fmt(b[k])}`), el("span", { class: "num", text: fmt(b[k]) })),
                ),
              ),
            ),
          )
        : emptyNote("none"),
    );
  return el(
    "div",
    { class: "pair-lists" },
    list("Shared", shared, "shared"),
    list("Only the image", onlyImage, "image"),
    list("Only the prompt", onlyText, "prompt"),
  );
}
