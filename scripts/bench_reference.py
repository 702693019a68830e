"""Reference CPU throughput of CLIP ViT-B/32 towers: PyTorch and ONNX Runtime.

Random-init ViT-B/32 (default transformers CLIPConfig, fixed seed). Towers:
  image: vision_model + visual_projection + L2 norm, input [B,3,224,224] float32
  text:  text_model + text_projection + L2 norm, input_ids [B,77] int64
         (every text is 77 tokens: BOS, 75 random ids, EOS; no padding)
Measured at batch 1 and 32, in items/s:
  PyTorch: torch.set_num_threads(usable_cores()), torch.inference_mode, warm-up.
  ORT:     each tower exported with torch.onnx.export (TorchScript exporter,
           dynamo=False, opset 17, dynamic batch axis) to a temp dir;
           onnxruntime CPUExecutionProvider, intra_op threads = usable_cores(),
           graph optimisation ORT_ENABLE_ALL.

Optional --monoscope-json FILE reads the Rust bench output
  {"results": [{"backend": "flex", "tower": "image"|"text", "batch": 1|32, "items_per_s": float}, ...]}
and adds columns with ratios monoscope/PyTorch and monoscope/ORT.
Measure both on the same machine at the same time of day: only the ratios are meaningful.

Optional --monoscope BIN --rounds N (paired mode, for shared, noisy hosts): N rounds, each
running `BIN bench --batch B` and then ORT (and PyTorch unless --no-pytorch) at the same
batch B, one batch size after the other, so that every monoscope figure has reference figures
taken seconds later. Prints each round's ratios and, per tower and batch, their median and
range: interference slows whichever runs during it, and the median of paired ratios is what
it moves least. Shorter timings per figure (2 s, at least 3 iterations).

Usage (repo root):  python3 scripts/bench_reference.py [--quick] [--monoscope-json FILE] [--json OUT]
                    python3 scripts/bench_reference.py --monoscope BIN [--rounds N] [--no-pytorch]
                    python3 scripts/bench_reference.py --export-image-onnx MODEL_DIR
Prints a markdown table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from transformers import CLIPConfig, CLIPModel
from cores import usable_cores


SEED = 0


class ImageTower(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.vision_model, self.proj = m.vision_model, m.visual_projection

    def forward(self, pixel_values):
        e = self.proj(self.vision_model(pixel_values=pixel_values).pooler_output)
        return e / e.norm(dim=-1, keepdim=True)


class TextTower(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.text_model, self.proj = m.text_model, m.text_projection

    def forward(self, input_ids):
        e = self.proj(self.text_model(input_ids=input_ids).pooler_output)
        return e / e.norm(dim=-1, keepdim=True)


def inputs(tower, batch, g):
    if tower == "image":
        return torch.randn(batch, 3, 224, 224, generator=g)
    ids = torch.randint(1, 49405, (batch, 77), generator=g)
    ids[:, 0], ids[:, -1] = 49406, 49407
    return ids


def timeit(fn, batch, warmup, min_iters, min_time):
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def export(module, x, path, name):
    torch.onnx.export(
        module,
        (x,),
        path,
        input_names=[name],
        output_names=["embeds"],
        dynamic_axes={name: {0: "batch"}, "embeds": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few iterations (noisy)")
    ap.add_argument("--monoscope-json", metavar="FILE")
    ap.add_argument("--json", metavar="OUT", help="also write results as JSON")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--cuda", action="store_true",
                    help="also time PyTorch on the GPU (f32, no TF32), for monoscope's wgpu backend")
    ap.add_argument("--no-cpu-pytorch", action="store_true",
                    help="skip PyTorch on the CPU (with --no-ort --cuda: the GPU reference alone)")
    ap.add_argument("--export-image-onnx", metavar="MODEL_DIR",
                    help="only export the image tower of the HF checkpoint in MODEL_DIR to "
                         "MODEL_DIR/image_tower.onnx (input pixel_values, for scripts/bench_web.mjs)")
    ap.add_argument("--monoscope", metavar="BIN",
                    help="paired mode: run `BIN bench` and the references in alternation")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the paired mode (5)")
    ap.add_argument("--no-pytorch", action="store_true", help="paired mode: ORT only")
    a = ap.parse_args()
    if a.monoscope:
        return paired(a)

    if a.export_image_onnx:
        model = CLIPModel.from_pretrained(a.export_image_onnx).eval()
        path = os.path.join(a.export_image_onnx, "image_tower.onnx")
        with torch.inference_mode():
            export(ImageTower(model).eval(), torch.randn(2, 3, 224, 224), path, "pixel_values")
        print(path)
        return

    import onnxruntime as ort

    threads = usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = CLIPModel(CLIPConfig()).eval()
    towers = {"image": ImageTower(model).eval(), "text": TextTower(model).eval()}
    warmup, min_iters, min_time = (1, 2, 0.0) if a.quick else (3, 5, 10.0)
    batches = [1, 32]
    res = {}  # (backend, tower, batch) -> items/s
    g = torch.Generator().manual_seed(SEED)

    with torch.inference_mode():
        for tower, mod in (() if a.no_cpu_pytorch else towers.items()):
            for b in batches:
                x = inputs(tower, b, g)
                res[("pytorch", tower, b)] = timeit(lambda: mod(x), b, warmup, min_iters, min_time)
                print(f"pytorch {tower} b={b}: {res[('pytorch', tower, b)]:.2f}/s", file=sys.stderr)

    if not a.no_ort:
        with tempfile.TemporaryDirectory() as d:
            for tower, mod in towers.items():
                name = "pixel_values" if tower == "image" else "input_ids"
                path = os.path.join(d, f"{tower}.onnx")
                t0 = time.perf_counter()
                export(mod, inputs(tower, 2, g), path, name)
                print(f"exported {tower} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                # correctness check against PyTorch (batch 3 != export batch 2: dynamic axis works)
                x = inputs(tower, 3, g)
                with torch.inference_mode():
                    ref = mod(x).numpy()
                got = sess.run(None, {name: x.numpy()})[0]
                assert np.abs(ref - got).max() < 1e-3, np.abs(ref - got).max()
                for b in batches:
                    feed = {name: inputs(tower, b, g).numpy()}
                    res[("ort", tower, b)] = timeit(lambda: sess.run(None, feed), b, warmup, min_iters, min_time)
                    print(f"ort {tower} b={b}: {res[('ort', tower, b)]:.2f}/s", file=sys.stderr)
                del sess

    # Last: moving the towers to the GPU must not happen before the ONNX export above.
    with torch.inference_mode():
        if a.cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
            for tower, mod in towers.items():
                mod.cuda()
                for b in batches:
                    x = inputs(tower, b, g).cuda()

                    def run():
                        mod(x)
                        torch.cuda.synchronize()

                    res[("pytorch-cuda", tower, b)] = timeit(run, b, warmup, min_iters, min_time)
                    print(f"pytorch-cuda {tower} b={b}: {res[('pytorch-cuda', tower, b)]:.2f}/s", file=sys.stderr)

    mono = {}
    if a.monoscope_json:
        for r in json.load(open(a.monoscope_json))["results"]:
            mono[(r["backend"], r["tower"], int(r["batch"]))] = float(r["items_per_s"])
    mono_backends = sorted({k[0] for k in mono})

    print(f"\nCLIP ViT-B/32 (random init), {threads} threads, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}{' (--quick: noisy)' if a.quick else ''}\n")
    cu = a.cuda
    head = ["tower", "batch", "PyTorch items/s", "ORT items/s"] + (["PyTorch-CUDA items/s"] if cu else [])
    for mb in mono_backends:
        head += [f"monoscope-{mb} items/s", f"{mb}/PyTorch", f"{mb}/ORT"] + ([f"{mb}/PyTorch-CUDA"] if cu else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * len(head)) + "|")
    for tower in towers:
        for b in batches:
            pt, ox = res.get(("pytorch", tower, b)), res.get(("ort", tower, b))
            pc = res.get(("pytorch-cuda", tower, b))
            row = [tower, str(b), f"{pt:.2f}" if pt else "-", f"{ox:.2f}" if ox else "-"] + ([f"{pc:.2f}"] if cu else [])
            for mb in mono_backends:
                m = mono.get((mb, tower, b))
                row += [f"{m:.2f}" if m else "-",
                        f"{m / pt:.2f}" if (m and pt) else "-",
                        f"{m / ox:.2f}" if (m and ox) else "-"] + ([f"{m / pc:.3f}" if m else "-"] if cu else [])
            print("| " + " | ".join(row) + " |")

    if a.json:
        out = {"threads": threads, "quick": a.quick,
               "results": [{"backend": k[0], "tower": k[1], "batch": k[2], "items_per_s": v} for k, v in res.items()]}
        json.dump(out, open(a.json, "w"), indent=1)


def paired(a):
    """--monoscope BIN: rounds of (monoscope, ORT, PyTorch) at one batch size after another."""
    import onnxruntime as ort

    threads = usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = CLIPModel(CLIPConfig()).eval()
    towers = {"image": ImageTower(model).eval(), "text": TextTower(model).eval()}
    g = torch.Generator().manual_seed(SEED)
    names = {"image": "pixel_values", "text": "input_ids"}
    batches = [1, 32]
    warmup, min_iters, min_time = 1, 3, 2.0
    with tempfile.TemporaryDirectory() as d:
        sessions = {}
        for tower, mod in towers.items():
            path = os.path.join(d, f"{tower}.onnx")
            export(mod, inputs(tower, 2, g), path, names[tower])
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sessions[tower] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feeds = {(t, b): inputs(t, b, g) for t in towers for b in batches}
        rounds = []  # per round: (backend, tower, batch) -> items/s
        for r in range(a.rounds):
            res = {}
            for b in batches:
                out = os.path.join(d, "mono.json")
                iters = "5" if b == 1 else "3"
                subprocess.run([a.monoscope, "bench", "--batch", str(b), "--iters", iters,
                                "--json", out], check=True, stdout=subprocess.DEVNULL)
                for m in json.load(open(out))["results"]:
                    res[("monoscope", m["tower"], int(m["batch"]))] = float(m["items_per_s"])
                for tower in towers:
                    feed = {names[tower]: feeds[(tower, b)].numpy()}
                    res[("ort", tower, b)] = timeit(lambda: sessions[tower].run(None, feed),
                                                    b, warmup, min_iters, min_time)
                    if not a.no_pytorch:
                        x = feeds[(tower, b)]
                        with torch.inference_mode():
                            res[("pytorch", tower, b)] = timeit(lambda: towers[tower](x), b,
                                                                warmup, min_iters, min_time)
            rounds.append(res)
            line = "  ".join(f"{t} b{b}: {res[('monoscope', t, b)] / res[('ort', t, b)]:.2f}"
                             for t in towers for b in batches)
            print(f"round {r + 1}/{a.rounds}, monoscope/ORT: {line}", file=sys.stderr)

    refs = ["ort"] + ([] if a.no_pytorch else ["pytorch"])
    label = {"ort": "ORT", "pytorch": "PyTorch"}
    print(f"\nCLIP ViT-B/32 (random init), {threads} threads, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {a.rounds} paired rounds\n")
    head = ["tower", "batch", "monoscope items/s (median)"]
    for ref in refs:
        head += [f"{label[ref]} items/s (median)", f"/ {label[ref]}: median", "range", "each round"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * len(head)) + "|")
    summary = []
    for tower in towers:
        for b in batches:
            mono = [r[("monoscope", tower, b)] for r in rounds]
            row = [tower, str(b), f"{statistics.median(mono):.2f}"]
            for ref in refs:
                ratios = [r[("monoscope", tower, b)] / r[(ref, tower, b)] for r in rounds]
                row += [f"{statistics.median(r[(ref, tower, b)] for r in rounds):.2f}",
                        f"**{statistics.median(ratios):.2f}**",
                        f"{min(ratios):.2f}-{max(ratios):.2f}",
                        " / ".join(f"{x:.2f}" for x in ratios)]
                summary.append({"reference": ref, "tower": tower, "batch": b,
                                "median_ratio": statistics.median(ratios), "ratios": ratios})
            print("| " + " | ".join(row) + " |")
    if a.json:
        json.dump({"threads": threads, "rounds": [
            [{"backend": k[0], "tower": k[1], "batch": k[2], "items_per_s": v} for k, v in r.items()]
            for r in rounds], "summary": summary}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
