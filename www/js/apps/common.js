// Helpers shared by the applications' panels: pixel canvases, same-site fetches, downloads
// and a progress row.

import { el } from "../dom.js";

// The demo world's colours: the attack's default zero-shot labels ("a red square", ...).
export const DEMO_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"];

// Draws RGBA bytes (side x side) into a new canvas; CSS scales it up without smoothing.
export function rgbaCanvas(rgba, side, label) {
  const canvas = el("canvas", { width: side, height: side, class: "pixel-canvas", role: "img", aria: { label } });
  const ctx = canvas.getContext("2d");
  ctx.putImageData(new ImageData(new Uint8ClampedArray(rgba), side, side), 0, 0);
  return canvas;
}

export function figure(canvas, caption) {
  return el("figure", { class: "app-figure" }, canvas, el("figcaption", { text: caption }));
}

async function fetchOk(url) {
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`could not load ${url}: HTTP ${res.status}`);
  return res;
}

export async function fetchBlob(url) {
  return (await fetchOk(url)).blob();
}

export async function fetchJson(url) {
  return (await fetchOk(url)).json();
}

// Saves bytes as a file through a temporary link (no server round trip).
export function download(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// A progress bar with a text line; hidden until the first set().
export function progressRow() {
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
