// The live training chart of "Build a bundle": FVU of image and text embeddings and the
// fraction of dead latents against the step, drawn on a canvas (colours from the page's CSS).

import { el, fmt } from "../dom.js";

const W = 360;
const H = 140;
const PAD = 28;

function cssColour(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

export class TrainChart {
  constructor() {
    this.canvas = el("canvas", { class: "train-chart", id: "build-chart", width: W, height: H, role: "img", aria: { label: "training chart: no steps yet" } });
    this.canvas.hidden = true;
    this.points = [];
  }

  reset() {
    this.points = [];
    this.canvas.hidden = true;
  }

  // st: {step, steps, fvu: [image, text], dead_fraction}
  add(st) {
    this.points.push(st);
    this.canvas.hidden = false;
    this.draw(st.steps);
    this.canvas.setAttribute(
      "aria-label",
      `training chart: step ${st.step} of ${st.steps}, FVU image ${fmt(st.fvu[0], 3)}, text ${fmt(st.fvu[1], 3)}, dead latents ${fmt(100 * st.dead_fraction, 1)}%`,
    );
  }

  draw(steps) {
    const ctx = this.canvas.getContext("2d");
    const fg = cssColour("--muted", "#666");
    ctx.clearRect(0, 0, W, H);
    ctx.strokeStyle = fg;
    ctx.fillStyle = fg;
    ctx.font = "10px sans-serif";
    ctx.beginPath();
    ctx.moveTo(PAD, 4);
    ctx.lineTo(PAD, H - PAD);
    ctx.lineTo(W - 4, H - PAD);
    ctx.stroke();
    ctx.fillText("1", 12, 10);
    ctx.fillText("0", 12, H - PAD);
    ctx.fillText(`step ${steps}`, W - 60, H - 10);
    const x = (step) => PAD + ((W - 4 - PAD) * step) / Math.max(1, steps);
    const y = (v) => H - PAD - (H - PAD - 4) * Math.min(1, Math.max(0, v));
    const line = (value, colour, dash) => {
      ctx.strokeStyle = colour;
      ctx.setLineDash(dash);
      ctx.beginPath();
      this.points.forEach((p, i) => (i ? ctx.lineTo(x(p.step), y(value(p))) : ctx.moveTo(x(p.step), y(value(p)))));
      ctx.stroke();
      ctx.setLineDash([]);
    };
    const series = [
      ["FVU image", (p) => p.fvu[0], cssColour("--class-ImgD", "#c2410c"), []],
      ["FVU text", (p) => p.fvu[1], cssColour("--class-TextD", "#1d5fd6"), []],
      ["dead", (p) => p.dead_fraction, fg, [4, 3]],
    ];
    series.forEach(([name, value, colour, dash], i) => {
      line(value, colour, dash);
      ctx.fillStyle = colour;
      ctx.fillText(name, PAD + 8 + i * 80, H - 10);
    });
  }
}
