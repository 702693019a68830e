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

MODEL="assets/tiny-clip"
DEMO_IMAGE="tests/fixtures/images/astronaut.jpg"
PROMPT="a photo of an astronaut" # the page's default prompt (www/app.js)
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

step "trunk build --release"
trunk build --release
done_step
wasm="dist/monoscope_bg.wasm"
if [[ -f "$wasm" ]]; then
  printf 'wasm: %s bytes (gzip -9: %s bytes)\n' "$(stat -c %s "$wasm")" "$(gzip -9 -c "$wasm" | wc -c)"
fi

step "native reference embeddings"
mkdir -p "$OUT_DIR"
NATIVE_JSON="$ROOT/$OUT_DIR/native.json"
cargo run --quiet -- embed --model "$MODEL" --image "$DEMO_IMAGE" --text "$PROMPT" --out "$NATIVE_JSON"
done_step

step "browser tests (headless chromium)"
MONOSCOPE_NATIVE_JSON="$NATIVE_JSON" node --test tests/browser/
done_step

printf '\nall tests passed\n'
