#!/usr/bin/env bash
# Regenerates the demo world end to end from a seed: trains the small CLIP on generated
# scenes, embeds held-out scenes, trains a TopK dictionary, analyses it into a result
# bundle, prints the factor table, and copies model + bundle to OUT (default assets/demo).
#   scripts/make_demo.sh [OUT]
# Env: SEED (0), STEPS (3000 CLIP steps), SCENES (5000 embedded scenes), DICT_STEPS (3000),
#      WORK (scratch dir, default $HOME/.cache/monoscope/demo-work), CARGO_TARGET_DIR.
# Runtime on a 2-core machine: about 20 minutes for the CLIP, 2 for the rest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/monoscope/target}"
SEED="${SEED:-0}"; STEPS="${STEPS:-3000}"; SCENES="${SCENES:-5000}"; DICT_STEPS="${DICT_STEPS:-3000}"
WORK="${WORK:-$HOME/.cache/monoscope/demo-work}"
OUT="${1:-assets/demo}"
cargo build --quiet
BIN="$CARGO_TARGET_DIR/debug/monoscope"
mkdir -p "$WORK"
"$BIN" world-train --out "$WORK/clip" --seed "$SEED" --steps "$STEPS" --resume
"$BIN" world-extract --model "$WORK/clip" --seed "$SEED" --scenes "$SCENES" --out "$WORK/emb.safetensors"
rm -rf "$WORK/dict"
# --center: subtract each modality's mean (SPEC §2), else the modality gap makes the
# dictionary split shared concepts into image-side and text-side features.
"$BIN" train --embeddings "$WORK/emb.safetensors" --kind topk --features 256 --k 8 \
  --steps "$DICT_STEPS" --batch 1024 --seed "$SEED" --center --out "$WORK/dict"
"$BIN" analyze --model "$WORK/clip" --dict "$WORK/dict" --embeddings "$WORK/emb.safetensors" \
  --vocab "$WORK/clip/labels.txt" --center --out "$WORK/bundle"
"$BIN" report "$WORK/bundle"
"$BIN" world-factors --model "$WORK/clip" --bundle "$WORK/bundle" --seed "$SEED" --json "$WORK/factors.json"
mkdir -p "$OUT/clip" "$OUT/bundle"
rm -rf "$OUT/clip" "$OUT/bundle" && mkdir -p "$OUT/clip" "$OUT/bundle"
cp "$WORK/clip/"{config.json,model.safetensors,tokenizer.json,labels.txt,world.json} "$OUT/clip/"
cp "$WORK/bundle/"{dictionary.safetensors,features.json,manifest.json,mds_histogram.svg} "$OUT/bundle/"
cp "$WORK/factors.json" "$OUT/factors.json"
# The embedding -> image decoder for the control panel (~3 min).
rm -rf "$OUT/decoder"
"$BIN" world-decoder --model "$OUT/clip" --seed "$SEED" --out "$OUT/decoder"
# Held-out scenes the web page offers as inputs.
rm -rf "$OUT/images"
"$BIN" world-images --seed "$SEED" --count 6 --out "$OUT/images"
# Probe groups for the page's demo (colour as the attribute).
rm -rf "$OUT/probe"
for colour in red blue; do
  "$BIN" world-images --seed "$SEED" --colour "$colour" --count 16 --out "$OUT/probe/$colour"
done
du -sh "$OUT"
