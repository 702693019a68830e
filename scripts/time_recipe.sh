#!/usr/bin/env bash
# Times the README's "Your own model" recipe per 1000 pairs on this machine: a random-init
# ViT-B/32 (`init`), N demo-world scenes with captions as a webdataset shard, then `extract`,
# `train` and `analyze`, each timed on its own (wall clock, one process each).
#   scripts/time_recipe.sh [N=1000] [WORKDIR=/tmp/monoscope-recipe-timing]
# TRAIN_STEPS (default 200) caps `train` (its default is 2000 steps whatever N is; the table
# gives steps/s, from which any step count follows).
# Uses the dev-profile binary (`cargo build`: dependencies at opt-level 3, as tests and CI
# use); pass MONOSCOPE_BIN to time another build (e.g. target/release/monoscope).
set -euo pipefail

N="${1:-1000}"
WORK="${2:-/tmp/monoscope-recipe-timing}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/monoscope/target}"
if [[ -z "${MONOSCOPE_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --quiet --bin monoscope)
  MONOSCOPE_BIN="$CARGO_TARGET_DIR/debug/monoscope"
fi
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

now() { date +%s.%N; }
declare -A SECS
timed() {
  local name="$1"
  shift
  local t0
  t0="$(now)"
  "$MONOSCOPE_BIN" "$@" > "$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; exit 1; }
  SECS[$name]="$(awk -v a="$(now)" -v b="$t0" 'BEGIN { print a - b }')"
}

timed init init --preset vit-b-32 --out clip
# Scenes as a webdataset shard: KEY.png + KEY.txt members.
timed scenes world-images --count "$N" --out scenes
node -e '
  const fs = require("fs");
  for (const e of JSON.parse(fs.readFileSync("scenes/index.json", "utf8")))
    fs.writeFileSync("scenes/" + e.file.replace(/\.png$/, ".txt"), e.caption);
'
(cd scenes && tar -cf ../shard-000000.tar --sort=name ./*.png ./*.txt)
timed extract extract --model clip --data shard-000000.tar --out emb.safetensors
STEPS="${TRAIN_STEPS:-200}"
timed train train --embeddings emb.safetensors --kind topk --center --steps "$STEPS" --out dict
timed analyze analyze --model clip --dict dict --embeddings emb.safetensors --center --out bundle

printf '\nrecipe on %s pairs (random-init ViT-B/32, CPU, %s cores):\n' "$N" "$(nproc)"
printf '%-8s %10s %16s\n' step seconds "s per 1000 pairs"
for s in init extract train analyze; do
  printf '%-8s %10.1f %16.1f\n' "$s" "${SECS[$s]}" "$(awk -v t="${SECS[$s]}" -v n="$N" 'BEGIN { print t * 1000 / n }')"
done
printf 'train: %s steps (d 512, 4096 features, k 32, batch 4096): %.1f steps/s; init does not depend on N\n' \
  "$STEPS" "$(awk -v s="$STEPS" -v t="${SECS[train]}" 'BEGIN { print s / t }')"
