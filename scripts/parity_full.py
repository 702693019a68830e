"""Full-size parity check: monoscope vs transformers on a ViT-B/32-shaped CLIP.

NOT run in CI (it writes a ~600 MB model and needs a release build). Steps:

1. Build a random-init CLIPModel with the default CLIPConfig (ViT-B/32 shapes,
   text vocab 49408, quick_gelu), randomised LayerNorms, fixed seed, and write
   it as a Hugging Face directory: config.json, model.safetensors (float32),
   tokenizer.json (from assets/clip-tokenizer), tokenizer_config.json,
   preprocessor_config.json.
2. Compute transformers reference embeddings (CLIPProcessor with the slow PIL
   CLIPImageProcessorPil at 224, tokenizer padding=True + attention mask) for
   the valid images in tests/fixtures/images and ~10 texts; write
   DIR/reference.json.
3. Run monoscope:
       cargo run --quiet [--release] -- embed --model DIR --image P ... --text T ... --out OUT.json
   (or "$MONOSCOPE_BIN embed ..." when MONOSCOPE_BIN is set), read its JSON
   {"images": [...], "image_embeds": [[...]], "texts": [...], "text_embeds": [[...]]}
   and print per-item cosine similarity and max abs difference.
   Exit status 1 if any cosine < --min-cos (default 0.999).

Usage (from the repo root):
    python3 scripts/parity_full.py                      # temp dir, removed afterwards
    python3 scripts/parity_full.py --keep /tmp/vitb32   # keep (and reuse) the model dir
    python3 scripts/parity_full.py --python-only --keep /tmp/vitb32   # only steps 1-2
    MONOSCOPE_BIN=target/release/monoscope python3 scripts/parity_full.py --keep /tmp/vitb32
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

TOKENIZER_JSON = os.path.join("assets", "clip-tokenizer", "tokenizer.json")
IMG_DIR = os.path.join("tests", "fixtures", "images")
IMAGES = [
    "astronaut.jpg",
    "coffee.jpg",
    "gray.png",
    "rgba.png",
    "tiny.png",
    "wide.png",
    "anim.gif",
    "image.bmp",
    "image.webp",
]
TEXTS = [
    "a photo of a cat",
    "a photo of an astronaut",
    "a cup of coffee on a table",
    "",
    "A PHOTO OF A DOG!!!",
    "Café naïve résumé — 東京の猫 🐱",
    "don't   stop\tbelieving\n",
    "fish &amp; chips",
    "the quick brown fox jumps over the lazy dog " * 10,
    "1234 5678 90",
]
SEED = 20240


def build(model_dir):
    torch.manual_seed(SEED)
    cfg = CLIPConfig()  # ViT-B/32 shapes
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
        model.logit_scale.fill_(4.0)
    model.save_pretrained(model_dir, safe_serialization=True)
    tok = CLIPTokenizer(tokenizer_file=TOKENIZER_JSON, model_max_length=77)
    tok.save_pretrained(model_dir)  # tokenizer.json + tokenizer_config.json
    shutil.copyfile(TOKENIZER_JSON, os.path.join(model_dir, "tokenizer.json"))
    CLIPImageProcessorPil().save_pretrained(model_dir)  # 224 / 224, bicubic, CLIP mean/std
    return model, tok


@torch.inference_mode()
def reference(model, tok, model_dir):
    proc = CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=tok)
    paths = [os.path.join(IMG_DIR, f) for f in IMAGES]
    ims = [Image.open(p) for p in paths]
    inputs = proc(text=TEXTS, images=ims, return_tensors="pt", padding=True, truncation=True, max_length=77)
    out = model(**inputs)
    ref = {
        "images": paths,
        "image_embeds": out.image_embeds.tolist(),
        "texts": TEXTS,
        "text_embeds": out.text_embeds.tolist(),
        "image_processor_class": type(proc.image_processor).__name__,
        "seed": SEED,
    }
    for k in ("image_embeds", "text_embeds"):
        e = out[k]
        c = (e @ e.T)[~torch.eye(len(e), dtype=torch.bool)]
        print(f"reference {k}: {tuple(e.shape)}, max pairwise cosine {c.max():.4f}")
    with open(os.path.join(model_dir, "reference.json"), "w") as f:
        json.dump(ref, f, ensure_ascii=False)
    return ref


def run_monoscope(model_dir, ref, out_json, release):
    args = ["embed", "--model", model_dir]
    for p in ref["images"]:
        args += ["--image", p]
    for t in ref["texts"]:
        args += ["--text", t]
    args += ["--out", out_json]
    binary = os.environ.get("MONOSCOPE_BIN")
    if binary:
        cmd = [binary] + args
    else:
        cmd = ["cargo", "run", "--quiet"] + (["--release"] if release else []) + ["--"] + args
    print("running:", " ".join(cmd[:8]), "...")
    subprocess.run(cmd, check=True)
    with open(out_json) as f:
        return json.load(f)


def compare(ref, got, min_cos):
    ok = True
    for kind, names_key in (("image_embeds", "images"), ("text_embeds", "texts")):
        a = np.asarray(ref[kind], dtype=np.float64)
        b = np.asarray(got[kind], dtype=np.float64)
        if a.shape != b.shape:
            print(f"{kind}: shape mismatch {a.shape} vs {b.shape}")
            ok = False
            continue
        if list(got.get(names_key, ref[names_key])) != list(ref[names_key]):
            print(f"warning: {names_key} differ in order/content between reference and monoscope output")
        print(f"\n{kind}:")
        # Random-init embeddings share a large common component, so also report the cosine after
        # subtracting the reference mean embedding (more sensitive; informational only).
        mu = a.mean(axis=0)
        print(f"{'cosine':>10} {'cos(ctr)':>10} {'max|diff|':>10}  item")
        for i, name in enumerate(ref[names_key]):
            cos = float(a[i] @ b[i] / (np.linalg.norm(a[i]) * np.linalg.norm(b[i]) + 1e-12))
            ac, bc = a[i] - mu, b[i] - mu
            cosc = float(ac @ bc / (np.linalg.norm(ac) * np.linalg.norm(bc) + 1e-12))
            mad = float(np.abs(a[i] - b[i]).max())
            flag = "" if cos >= min_cos else "  <-- FAIL"
            ok &= cos >= min_cos
            print(f"{cos:10.6f} {cosc:10.6f} {mad:10.2e}  {name[:60]!r}{flag}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", metavar="DIR", help="write the model here and keep it (reused if it has reference.json)")
    ap.add_argument("--python-only", action="store_true", help="only build DIR and the transformers reference")
    ap.add_argument("--release", action="store_true", help="cargo run --release")
    ap.add_argument("--min-cos", type=float, default=0.999)
    ap.add_argument("--rebuild", action="store_true", help="rebuild DIR even if it exists")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())

    model_dir = a.keep or tempfile.mkdtemp(prefix="monoscope-parity-")
    os.makedirs(model_dir, exist_ok=True)
    try:
        ref_path = os.path.join(model_dir, "reference.json")
        if os.path.exists(ref_path) and not a.rebuild:
            print(f"reusing {model_dir}")
            ref = json.load(open(ref_path))
        else:
            model, tok = build(model_dir)
            ref = reference(model, tok, model_dir)
            del model
        print(f"model dir: {model_dir}")
        if a.python_only:
            return 0
        got = run_monoscope(model_dir, ref, os.path.join(model_dir, "monoscope_out.json"), a.release)
        ok = compare(ref, got, a.min_cos)
        print("\nPARITY OK" if ok else f"\nPARITY FAILED (some cosine < {a.min_cos})")
        return 0 if ok else 1
    finally:
        if not a.keep:
            shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
