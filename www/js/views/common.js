// Pieces shared by several views.

import { el, classBadge, bar, fmt } from "../dom.js";

export const TOP_FEATURES = 8;

export function featureLabel(f) {
  const first = f && Array.isArray(f.labels) && f.labels.length ? f.labels[0] : null;
  if (!first) return "(no label)";
  return Array.isArray(first) ? String(first[0]) : String(first);
}

// Indices of the largest positive activations, largest first.
export function topActive(acts, n = TOP_FEATURES) {
  if (!acts) return [];
  const out = [];
  for (let i = 0; i < acts.length; i++) if (acts[i] > 0) out.push(i);
  out.sort((a, b) => acts[b] - acts[a]);
  return n ? out.slice(0, n) : out;
}

// A button that opens the feature page; keyboard users get it through Tab and Enter/Space.
export function featureButton(app, id, scope) {
  const f = app.state.bundle?.byId.get(id);
  return el(
    "button",
    {
      type: "button",
      class: "feature-link",
      dataset: { feature: String(id), focusKey: `${scope}-f${id}` },
      aria: { label: `feature ${id}: ${featureLabel(f)}, open its page` },
      onclick: () => app.selectFeature(id),
    },
    el("span", { class: "feature-id", text: `#${id}` }),
    " ",
    el("span", { class: "feature-label", text: featureLabel(f) }),
  );
}

// One row: class badge, feature button, activation bar and value, MDS.
export function featureRow(app, id, act, maxAct, scope) {
  const f = app.state.bundle?.byId.get(id);
  return el(
    "li",
    { class: "feature-row", dataset: { feature: String(id) } },
    classBadge(f?.class),
    featureButton(app, id, scope),
    bar(act, maxAct, `activation ${fmt(act)}`),
    el("span", { class: "num", title: "activation", text: fmt(act) }),
    el("span", { class: "num mds", title: "modality dominance score", text: `MDS ${fmt(f?.mds, 2)}` }),
  );
}

export function inputTitle(item, { small = true } = {}) {
  if (item.kind === "image") {
    const img = el("img", { class: small ? "thumb-small" : "thumb", alt: "" });
    if (item.thumb) img.src = item.thumb;
    return el("span", { class: "input-title" }, img, el("span", { text: item.name }));
  }
  return el("span", { class: "input-title prompt-title" }, el("q", { text: item.text }));
}

export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

export function emptyNote(text) {
  return el("p", { class: "empty", text });
}
