#!/usr/bin/env bash
# The README's demo-world table of dictionary kinds (issue 15): every kind trained on the
# same centred demo-world embeddings (the shipped CLIP, 5000 held-out scenes), analysed
# into a bundle and scored against the world's known factors. One row per kind: FVU and
# L0 and dead fraction (features never fired), image / text, from the bundle's metrics,
# class counts by MDS (ImgD / TextD / CrossD / Rare) and by the Iso-Energy rule, how many
# classified features the two agree on, and the factor-table score. Then `monoscope
# compare` over all the bundles (Bridge Scores, class overlaps) into WORK/compare.md.
#   scripts/demo_kinds.sh [WORK]          (default $HOME/.cache/monoscope/demo-kinds)
# Env: KINDS (all seven), STEPS (3000), CARGO_TARGET_DIR. About 3 minutes on 2 cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/monoscope/target}"
WORK="${1:-$HOME/.cache/monoscope/demo-kinds}"
KINDS="${KINDS:-topk relu batchtopk matryoshka jumprelu random aligned groupsparse split ncl}"
STEPS="${STEPS:-3000}"
cargo build --quiet
MODEL=assets/demo/clip
mkdir -p "$WORK"
# A copy, so that a rebuild while this runs does not swap the binary under it.
cp "$CARGO_TARGET_DIR/debug/monoscope" "$WORK/monoscope"
BIN="$WORK/monoscope"
"$BIN" world-extract --model "$MODEL" --seed 0 --scenes 5000 --out "$WORK/emb.safetensors"
echo "| kind | FVU image / text | L0 image / text | dead image / text | ImgD / TextD / CrossD / Rare (MDS) | by Iso-Energy | MDS = Iso-Energy | factors as expected |"
echo "|---|---|---|---|---|---|---|---|"
for kind in $KINDS; do
  # The demo's shape: K = 256, k = 8 (kinds without k are tuned to a similar L0:
  # JumpReLU's λ = 1.5e-2, ReLU's L1 = 3e-2). The aligned SAE's β is in per-element
  # units: 6e-3 at d = 32 weighs what the default 4e-4 weighs at CLIP's d = 512.
  extra=(--k 8)
  case "$kind" in
    aligned) extra=(--k 8 --align 6e-3) ;;
    jumprelu) extra=(--l0 1.5e-2) ;;
    relu) extra=(--l1 3e-2) ;;
    ncl) extra=(--hidden 256) ;;
  esac
  rm -rf "$WORK/$kind"
  "$BIN" train --embeddings "$WORK/emb.safetensors" --kind "$kind" --features 256 "${extra[@]}" \
    --steps "$STEPS" --batch 1024 --seed 0 --center --out "$WORK/$kind/dict" 2>/dev/null
  "$BIN" analyze --model "$MODEL" --dict "$WORK/$kind/dict" --embeddings "$WORK/emb.safetensors" \
    --vocab "$MODEL/labels.txt" --center --out "$WORK/$kind/bundle" >/dev/null 2>&1
  hits="$("$BIN" world-factors --model "$MODEL" --bundle "$WORK/$kind/bundle" --seed 0 \
    | sed -n 's/^\([0-9]* of [0-9]*\) factors land in the expected class$/\1/p')"
  python3 - "$WORK/$kind" "$kind" "$hits" <<'PY'
import json, sys
work, kind, hits = sys.argv[1:]
m = json.load(open(f"{work}/bundle/manifest.json"))
feats = json.load(open(f"{work}/bundle/features.json"))["features"]
# The Iso-Energy class (src/analysis/structure.rs): mu = share of squared activation on
# images; CrossD for 0.05 <= mu <= 0.95, dead features Rare.
def energy_class(f):
    e = f["energy_image"] + f["energy_text"]
    if e <= 1e-9:
        return "Rare"
    mu = f["energy_image"] / e
    return "ImgD" if mu > 0.95 else "TextD" if mu < 0.05 else "CrossD"
order = ["ImgD", "TextD", "CrossD", "Rare"]
ec = [sum(1 for f in feats if energy_class(f) == c) for c in order]
both = [(f["class"], energy_class(f)) for f in feats if f["class"] != "Rare" and energy_class(f) != "Rare"]
agree = f"{sum(1 for a, b in both if a == b)} of {len(both)}"
q = m["metrics"]["quality"]
i, t = q["image"], q["text"]
f = lambda v: "-" if v is None or v != v else f"{v:.3f}"
c = m["class_counts"]
print(f"| {kind} | {f(i['fvu'])} / {f(t['fvu'])} | {i['l0']:.1f} / {t['l0']:.1f} | "
      f"{f(i['dead_fraction'])} / {f(t['dead_fraction'])} | {' / '.join(map(str, c))} | "
      f"{' / '.join(map(str, ec))} | {agree} | {hits} |")
PY
done
"$BIN" compare $(for kind in $KINDS; do echo "$WORK/$kind/bundle"; done) --embeddings "$WORK/emb.safetensors" \
  --svg "$WORK/compare.svg" --json "$WORK/compare.json" > "$WORK/compare.md"
echo "compare: $WORK/compare.md, $WORK/compare.svg"
