#!/usr/bin/env bash
# trunk's post_build hook (Trunk.toml [[hooks]]): the site's second wasm build, the same crate
# with its GEMM kernel on WebAssembly relaxed SIMD (cargo feature `relaxed-simd`:
# f32x4.relaxed_madd, a fused multiply-add where the CPU has one), into relaxed/ beside
# trunk's own build. A module with relaxed-SIMD instructions does not load where the browser
# lacks them, so www/worker.js probes for them and imports ./relaxed/monoscope.js or
# ./monoscope.js.
#
# A hook and not a second <link data-trunk rel="rust">: trunk runs its rust pipelines at the
# same time, and both would write the same wasm-bindgen and wasm-opt outputs (named after the
# package, in $CARGO_TARGET_DIR/wasm-bindgen/release and wasm-opt/release), so one build could
# ship the other's module. This runs after trunk's build, with the same steps: the tools from
# PATH (Trunk.toml [tools]), wasm-bindgen's "web" target without TypeScript, wasm-opt -Os, and
# its own cargo profile (Cargo.toml: wasm-relaxed, dev-relaxed) so the two builds never share
# an artifact.
set -euo pipefail
: "${TRUNK_STAGING_DIR:?run by trunk as a post_build hook (Trunk.toml)}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
if [[ "${TRUNK_PROFILE:-debug}" == release ]]; then profile=wasm-relaxed; else profile=dev-relaxed; fi
echo "[build_relaxed] cargo build --profile $profile --features relaxed-simd (the relaxed-SIMD wasm)"
cargo build --target wasm32-unknown-unknown --offline --profile "$profile" --example web --features relaxed-simd
bound="$target_dir/wasm-bindgen/$profile"
out="$TRUNK_STAGING_DIR/relaxed"
mkdir -p "$bound" "$out"
wasm-bindgen --target=web --out-dir="$bound" --out-name=monoscope --no-typescript \
  "$target_dir/wasm32-unknown-unknown/$profile/examples/web.wasm"
if [[ -d "$bound/snippets" ]]; then
  echo "[build_relaxed] error: wasm-bindgen wrote snippets/, which this hook does not copy" >&2
  exit 1
fi
cp "$bound/monoscope.js" "$out/monoscope.js"
if [[ "$profile" == wasm-relaxed ]]; then
  # As trunk's data-wasm-opt="s" (www/index.html), with relaxed SIMD allowed.
  wasm-opt -Os --enable-relaxed-simd --output="$out/monoscope_bg.wasm" "$bound/monoscope_bg.wasm"
else
  cp "$bound/monoscope_bg.wasm" "$out/monoscope_bg.wasm"
fi
echo "[build_relaxed] $out/monoscope_bg.wasm: $(stat -c %s "$out/monoscope_bg.wasm") bytes"
