// DOM helpers. Every piece of data reaches the page through textContent or a DOM property,
// never through innerHTML, so prompts, file names and bundle labels always stay text.

// el("p", {class: "x", text: "hello", onclick: fn, dataset: {k: "v"}, aria: {label: "l"}}, ...children)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "aria") for (const [k, v] of Object.entries(value)) node.setAttribute(`aria-${k}`, String(v));
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "style") {
      // CSSOM (allowed by the CSP), not a style attribute.
      for (const [k, v] of Object.entries(value)) {
        if (k.startsWith("--")) node.style.setProperty(k, v);
        else node.style[k] = v;
      }
    } else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// Replaces a container's content and keeps keyboard focus on the element with the same
// data-focus-key, so re-rendering a view under the user's cursor does not lose their place.
export function replaceKeepingFocus(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : undefined;
  container.replaceChildren();
  append(container, children);
  if (key !== undefined) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

export const CLASSES = ["ImgD", "TextD", "CrossD", "Rare"];
export const CLASS_TITLES = {
  ImgD: "image-dominant (fires mostly for images)",
  TextD: "text-dominant (fires mostly for text)",
  CrossD: "cross-modal (fires for both)",
  Rare: "rare (too little support to classify)",
};

export function classBadge(cls) {
  const c = CLASSES.includes(cls) ? cls : "Rare";
  return el("span", { class: `badge badge-${c}`, title: CLASS_TITLES[c], text: c });
}

export function classLegend() {
  return el(
    "ul",
    { class: "legend", aria: { label: "feature classes" } },
    CLASSES.map((c) => el("li", {}, classBadge(c), " ", CLASS_TITLES[c])),
  );
}

// Colours of the classes as the current theme draws them (for Chart.js, which needs values),
// read from style.css's --class-* properties, their only definition.
export function classColours() {
  const s = getComputedStyle(document.documentElement);
  const out = {};
  for (const c of CLASSES) out[c] = s.getPropertyValue(`--class-${c}`).trim() || "#888";
  return out;
}

export function themeColour(name, fallback = "#888") {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export function fmt(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return "–";
  return Number(x).toFixed(digits);
}

// A message as one line of at most `max` characters: whitespace runs (newlines included)
// become one space and a longer text is cut with "…" (an engine error may quote a hostile
// file's 10 MB string).
export function oneLine(text, max = 400) {
  const s = String(text ?? "")
    .slice(0, 4 * max)
    .replace(/\s+/g, " ")
    .trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export function fmtBytes(n) {
  if (!Number.isFinite(n) || n <= 0) return "0 B";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

// A horizontal bar: a track with a fill whose width is set through CSSOM.
export function bar(value, max, label) {
  const frac = max > 0 ? Math.max(0, Math.min(1, value / max)) : 0;
  const fill = el("span", { class: "bar-fill" });
  fill.style.width = `${(frac * 100).toFixed(1)}%`;
  return el("span", { class: "bar", role: "img", aria: { label: label ?? fmt(value) } }, fill);
}

export function errorBox(message) {
  return el("p", { class: "error", role: "alert", text: message });
}
