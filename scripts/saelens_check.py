"""Loads monoscope-trained dictionaries with sae-lens itself and compares activations.

For each KIND_DIR (made by scripts/test.sh: tests/out/kinds/KIND with bundle/ and
native.json = `monoscope embed --bundle`), copies bundle/dictionary.safetensors as a
SAELens directory (sae_weights.safetensors + a cfg.json: "jumprelu" for batchtopk,
matryoshka and jumprelu; "topk" for topk-activated kinds; "standard" for relu), loads it
with SAE.load_from_disk, encodes the native image embedding minus the bundle's image mean
and prints the largest difference from monoscope's activations.

Usage: python3 scripts/saelens_check.py tests/out/kinds/{batchtopk,jumprelu,matryoshka,random,relu}
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from sae_lens import SAE

ARCH = {"batchtopk": "jumprelu", "matryoshka": "jumprelu", "jumprelu": "jumprelu", "relu": "standard"}


def main():
    worst = 0.0
    for kind_dir in sys.argv[1:]:
        m = json.load(open(os.path.join(kind_dir, "bundle", "manifest.json")))
        nat = json.load(open(os.path.join(kind_dir, "native.json")))
        c = m["dictionary"]["config"]
        arch = ARCH.get(c["kind"], "topk")
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(os.path.join(kind_dir, "bundle", "dictionary.safetensors"), os.path.join(d, "sae_weights.safetensors"))
            cfg = {"d_in": c["d"], "d_sae": c["features"], "architecture": arch, "apply_b_dec_to_input": True,
                   "normalize_activations": "none", "dtype": "float32", "device": "cpu"}
            if arch == "topk":
                cfg["k"] = c["k"]
            json.dump(cfg, open(os.path.join(d, "cfg.json"), "w"))
            sae = SAE.load_from_disk(d)
        mean = np.array(m["dataset"]["modality_means"]["image"], dtype=np.float32) if m["analysis"]["center"] else 0.0
        x = torch.tensor(np.array(nat["image_embeds"][0], dtype=np.float32) - mean)[None]
        with torch.no_grad():
            z = sae.encode(x)[0].numpy()
        want = np.array(nat["image_activations"][0], dtype=np.float32)
        diff = float(np.abs(z - want).max())
        worst = max(worst, diff)
        print(f"{c['kind']}: sae-lens {type(sae).__name__}; max |sae-lens - monoscope| = {diff:.2e}; "
              f"active {int((z > 0).sum())} vs {int((want > 0).sum())}")
    if worst > 1e-5:
        sys.exit(f"differences above 1e-5 ({worst})")


if __name__ == "__main__":
    main()
