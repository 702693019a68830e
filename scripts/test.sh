#!/usr/bin/env bash
# THE test command: lint, native tests, wasm build, browser test against the native CLI.
#   scripts/test.sh
# Env: CARGO_TARGET_DIR (default $HOME/.cache/monoscope/target, shared between runs),
#      MONOSCOPE_SKIP_INSTALL=1 to skip scripts/install-tools.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/monoscope/target}"
export PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# The page's default inputs (www/app.js): the first demo image, its caption from
# assets/demo/images/index.json, and SECOND_PROMPT.
DEMO_MODEL="assets/demo/clip"
DEMO_IMAGE="assets/demo/images/scene-0.png"
DEMO_CAPTION="$(node -e 'process.stdout.write(require("./assets/demo/images/index.json")[0].caption)')"
SECOND_PROMPT="a big red circle"
# The random-init fixture model, still reachable as ?model=tiny-clip.
TINY_MODEL="assets/tiny-clip"
TINY_IMAGE="tests/fixtures/images/astronaut.jpg"
TINY_PROMPT="a photo of an astronaut"
OUT_DIR="tests/out"

step() {
  STEP_NAME="$*"
  STEP_START=$SECONDS
  printf '\n==> %s\n' "$*"
}
done_step() { printf '<== %s (%ss)\n' "$STEP_NAME" "$((SECONDS - STEP_START))"; }

if [[ "${MONOSCOPE_SKIP_INSTALL:-0}" != 1 ]]; then
  step "install tools"
  scripts/install-tools.sh
  done_step
fi

step "cargo fmt --check"
cargo fmt --all -- --check
done_step

step "cargo clippy (native)"
cargo clippy --all-targets -- -D warnings
done_step

step "cargo test"
cargo test
done_step

step "cargo clippy (wasm32)"
cargo clippy --target wasm32-unknown-unknown --lib --bins --examples -- -D warnings
done_step

# The page's GEMM kernel (SIMD128) compiled with the page's settings and checked in Node's V8.
step "wasm GEMM (node)"
node --test tests/wasm/
done_step

step "trunk build --release"
trunk build --release
done_step
for wasm in dist/monoscope_bg.wasm dist/relaxed/monoscope_bg.wasm; do
  if [[ -f "$wasm" ]]; then
    printf '%s: %s bytes (gzip -9: %s bytes)\n' "$wasm" "$(stat -c %s "$wasm")" "$(gzip -9 -c "$wasm" | wc -c)"
  fi
done

step "native reference embeddings"
mkdir -p "$OUT_DIR"
NATIVE_JSON="$ROOT/$OUT_DIR/native.json"
NATIVE_TINY_JSON="$ROOT/$OUT_DIR/native-tiny.json"
cargo run --quiet -- embed --model "$DEMO_MODEL" --image "$DEMO_IMAGE" \
  --text "$DEMO_CAPTION" --text "$SECOND_PROMPT" --out "$NATIVE_JSON"
cargo run --quiet -- embed --model "$TINY_MODEL" --image "$TINY_IMAGE" --text "$TINY_PROMPT" --out "$NATIVE_TINY_JSON"
# The page's demo probe (tests/browser/apps.test.mjs compares its counts with these).
cargo run --quiet -- probe --model "$DEMO_MODEL" --bundle assets/demo/bundle \
  --group assets/demo/probe/red --group assets/demo/probe/blue --prompt red --prompt blue \
  --json "$ROOT/$OUT_DIR/probe-native.json" > /dev/null
done_step

# A small bundle of every dictionary kind for the demo model, and the CLI's activations of
# the page's default inputs with each (tests/browser/kinds.test.mjs loads them in the page).
step "bundles of every dictionary kind"
KINDS_DIR="$OUT_DIR/kinds"
rm -rf "$KINDS_DIR" && mkdir -p "$KINDS_DIR"
cargo run --quiet -- world-extract --model "$DEMO_MODEL" --seed 3 --scenes 600 --out "$KINDS_DIR/emb.safetensors"
for kind in relu ncl batchtopk matryoshka jumprelu random aligned groupsparse split; do
  cargo run --quiet -- train --embeddings "$KINDS_DIR/emb.safetensors" --kind "$kind" --features 64 --k 4 \
    --l0 1.5e-2 --align 6e-3 --steps 150 --batch 256 --center --out "$KINDS_DIR/$kind/dict" 2>/dev/null
  cargo run --quiet -- analyze --model "$DEMO_MODEL" --dict "$KINDS_DIR/$kind/dict" \
    --embeddings "$KINDS_DIR/emb.safetensors" --center --out "$KINDS_DIR/$kind/bundle" >/dev/null 2>&1
  cargo run --quiet -- embed --model "$DEMO_MODEL" --bundle "$KINDS_DIR/$kind/bundle" --image "$DEMO_IMAGE" \
    --text "$DEMO_CAPTION" --text "$SECOND_PROMPT" --out "$KINDS_DIR/$kind/native.json"
done
done_step

# A real-size model for tests/browser/realsize.test.mjs (the f16 one and its bundle come from
# tests/recipe.rs, run by cargo test above, in tests/out/recipe/). Generated, never committed.
step "real-size model (random-init ViT-B/32, f32)"
BIG_MODEL="$OUT_DIR/vit-b-32-f32"
cargo run --quiet -- init --preset vit-b-32 --dtype f32 --out "$BIG_MODEL"
cargo run --quiet -- embed --model "$BIG_MODEL" --image "$DEMO_IMAGE" \
  --text "$DEMO_CAPTION" --text "$SECOND_PROMPT" --out "$ROOT/$OUT_DIR/native-vit-b-32-f32.json"
done_step

# 300 demo-world scenes in the folder layout (image + same-name .txt) for
# tests/browser/build.test.mjs, which builds a bundle from them in the page.
step "scenes for the on-device build"
BUILD_SCENES="$OUT_DIR/build-scenes"
rm -rf "$BUILD_SCENES"
cargo run --quiet -- world-images --count 300 --seed 7 --out "$BUILD_SCENES"
node -e '
  const fs = require("fs"), dir = process.argv[1];
  for (const e of JSON.parse(fs.readFileSync(dir + "/index.json", "utf8")))
    fs.writeFileSync(dir + "/" + e.file.replace(/\.png$/, ".txt"), e.caption + "\n");
' "$BUILD_SCENES"
done_step

step "browser tests (headless chromium)"
export MONOSCOPE_NATIVE_JSON="$NATIVE_JSON" MONOSCOPE_NATIVE_TINY_JSON="$NATIVE_TINY_JSON"
node --test tests/browser/
done_step

step "web budgets (printed, not asserted)"
node tests/browser/budgets.mjs
done_step

printf '\nall tests passed\n'
