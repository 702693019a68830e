"""Extraction throughput, monoscope next to PyTorch, in one run (issue 12, item 4).

Both embed the same image-caption pairs with the same random-init ViT-B/32 (the default
transformers CLIPConfig, seed 0, saved in the Hugging Face layout with the repo's CLIP
tokenizer) and are timed from start to finish, model load included:

  PyTorch:   transformers CLIPModel + CLIPProcessor; a torch DataLoader with
             --workers worker processes (default 2) reads, decodes and preprocesses
             the pairs, batch --batch (default 32); the main process runs
             both towers and projections under torch.inference_mode with
             torch.set_num_threads(usable_cores()). Captions pad to the batch's longest.
  monoscope: `monoscope extract --data FOLDER --batch B --decode-threads T` for each T in
             --decode-threads (default 0 and 2: in-line decoding, then the pipeline).

The pairs: a folder of the repo's test photos (tests/fixtures/images/astronaut.jpg and
coffee.jpg), repeated to --pairs files, each with a same-name .txt caption (the layout
`extract` reads as a folder). Prints a markdown table of pairs/s and ratios against
PyTorch; --json OUT also writes them. Only ratios from one run mean anything.

Usage (repo root, after `cargo build`):
  python3 scripts/extract_reference.py --monoscope $CARGO_TARGET_DIR/debug/monoscope \
      [--pairs 512] [--batch 32] [--workers 2] [--decode-threads 0 2] [--work DIR] [--json OUT]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast
from cores import usable_cores


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ["astronaut.jpg", "coffee.jpg"]
CAPTIONS = ["a photo of an astronaut", "a cup of coffee on a table"]


def make_model(path):
    """Random-init ViT-B/32 in the HF layout (config, safetensors, tokenizer, preprocessor)."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return
    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).eval().save_pretrained(path, safe_serialization=True)
    shutil.copy(os.path.join(ROOT, "assets/clip-tokenizer/tokenizer.json"), path)
    CLIPImageProcessor().save_pretrained(path)


def make_pairs(path, n):
    os.makedirs(path, exist_ok=True)
    for i in range(n):
        j = i % len(PHOTOS)
        stem = os.path.join(path, f"{i:06d}")
        shutil.copy(os.path.join(ROOT, "tests/fixtures/images", PHOTOS[j]), stem + ".jpg")
        with open(stem + ".txt", "w") as f:
            f.write(f"{CAPTIONS[j]} ({i})\n")


class Pairs(torch.utils.data.Dataset):
    def __init__(self, folder, processor):
        self.stems = sorted(p[:-4] for p in os.listdir(folder) if p.endswith(".jpg"))
        self.folder, self.processor = folder, processor

    def __len__(self):
        return len(self.stems)

    def __getitem__(self, i):
        stem = os.path.join(self.folder, self.stems[i])
        with Image.open(stem + ".jpg") as im:
            pixels = self.processor(images=im.convert("RGB"), return_tensors="pt")["pixel_values"][0]
        with open(stem + ".txt") as f:
            caption = f.read().strip()
        return pixels, caption


def pytorch_run(model_dir, folder, batch, workers):
    start = time.perf_counter()
    torch.set_num_threads(usable_cores())
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPImageProcessor.from_pretrained(model_dir)
    tokenizer = CLIPTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    data = Pairs(folder, processor)

    def collate(items):
        pixels = torch.stack([p for p, _ in items])
        text = tokenizer([c for _, c in items], padding="longest", truncation=True,
                         max_length=77, return_tensors="pt")
        return pixels, text

    loader = torch.utils.data.DataLoader(data, batch_size=batch, num_workers=workers,
                                         collate_fn=collate)
    n = 0
    with torch.inference_mode():
        for pixels, text in loader:
            img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
            txt = model.text_projection(model.text_model(
                input_ids=text["input_ids"], attention_mask=text["attention_mask"]).pooler_output)
            img = img / img.norm(dim=-1, keepdim=True)
            txt = txt / txt.norm(dim=-1, keepdim=True)
            n += img.shape[0]
    return n, time.perf_counter() - start


def monoscope_run(binary, model_dir, folder, batch, threads, work):
    out = os.path.join(work, f"monoscope-{threads}.safetensors")
    for p in (out, out + ".partial"):
        if os.path.exists(p):
            os.remove(p)
    start = time.perf_counter()
    subprocess.run([binary, "extract", "--model", model_dir, "--data", folder, "--out", out,
                    "--batch", str(batch), "--decode-threads", str(threads)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--monoscope", required=True, help="the monoscope binary")
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--decode-threads", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--work", help="folder for the model and pairs (default: a temp dir)")
    ap.add_argument("--json")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="monoscope-extract-")
    model_dir, folder = os.path.join(work, "vit-b-32"), os.path.join(work, f"pairs-{a.pairs}")
    make_model(model_dir)
    if not os.path.isdir(folder):
        make_pairs(folder, a.pairs)

    rows = []
    n, secs = pytorch_run(model_dir, folder, a.batch, a.workers)
    assert n == a.pairs, (n, a.pairs)
    ref = n / secs
    rows.append({"who": f"PyTorch, DataLoader {a.workers} workers", "pairs_per_s": ref})
    for t in a.decode_threads:
        secs = monoscope_run(a.monoscope, model_dir, folder, a.batch, t, work)
        rows.append({"who": f"monoscope, --decode-threads {t}", "pairs_per_s": a.pairs / secs})

    print(f"{a.pairs} pairs ({', '.join(PHOTOS)} repeated), batch {a.batch}, "
          f"random-init ViT-B/32, {usable_cores()} cores, model load included")
    print("| run | pairs/s | x PyTorch |\n|---|---:|---:|")
    for r in rows:
        r["ratio"] = r["pairs_per_s"] / ref
        print(f"| {r['who']} | {r['pairs_per_s']:.2f} | {r['ratio']:.2f}x |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"pairs": a.pairs, "batch": a.batch, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
