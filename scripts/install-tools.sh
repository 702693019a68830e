#!/usr/bin/env bash
# Installs (idempotently) everything the build and the browser tests need:
#   - the wasm32-unknown-unknown Rust target
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock
#   - trunk 0.21.14
#   - chromium + mesa-vulkan-drivers (Debian packages)
#   - npm packages from package-lock.json (playwright-core, binaryen@132 -> wasm-opt)
# Fast when everything is already present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
TRUNK_VERSION="0.21.14"
# cargo install honours CARGO_TARGET_DIR; keep tool builds out of the project's target dir
# (no lock contention with project builds, and a cache that survives between runs).
INSTALL_TARGET_DIR="${MONOSCOPE_TOOLS_TARGET_DIR:-$HOME/.cache/monoscope/tools-target}"

log() { printf '[install-tools] %s\n' "$*"; }

# --- Rust wasm target -------------------------------------------------------
if rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
  log "rust target wasm32-unknown-unknown: present"
else
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# --- wasm-bindgen-cli (must match Cargo.lock exactly) -----------------------
WB_VERSION="$(awk '
  /^\[\[package\]\]/ { inpkg = 1; name = ""; next }
  inpkg && /^name = / { gsub(/"/, "", $3); name = $3; next }
  inpkg && /^version = / && name == "wasm-bindgen" { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)"
if [[ -z "$WB_VERSION" ]]; then
  echo "[install-tools] error: no wasm-bindgen package in Cargo.lock" >&2
  exit 1
fi
trunk_wb="$(sed -n 's/^wasm_bindgen *= *"\([^"]*\)".*/\1/p' Trunk.toml 2>/dev/null || true)"
if [[ -n "$trunk_wb" && "$trunk_wb" != "$WB_VERSION" ]]; then
  echo "[install-tools] error: Trunk.toml [tools] wasm_bindgen = \"$trunk_wb\" but Cargo.lock has wasm-bindgen $WB_VERSION; update Trunk.toml" >&2
  exit 1
fi
have_wb="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have_wb" == "$WB_VERSION" ]]; then
  log "wasm-bindgen $WB_VERSION: present"
else
  log "cargo install wasm-bindgen-cli --version $WB_VERSION (have: ${have_wb:-none}; ~7-10 min)"
  # Without --locked: the locked dependency set needs a version the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --force --target-dir "$INSTALL_TARGET_DIR"
fi

# --- trunk --------------------------------------------------------------------
have_trunk="$(trunk --version 2>/dev/null | awk '{print $2}' || true)"
if [[ "$have_trunk" == "$TRUNK_VERSION" ]]; then
  log "trunk $TRUNK_VERSION: present"
else
  log "cargo install trunk --version $TRUNK_VERSION --locked (have: ${have_trunk:-none}; ~10 min)"
  cargo install trunk --version "$TRUNK_VERSION" --locked --force --target-dir "$INSTALL_TARGET_DIR"
fi

# --- Debian packages ----------------------------------------------------------
missing=()
for pkg in chromium mesa-vulkan-drivers; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    log "apt package $pkg: present"
  else
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  log "apt-get install ${missing[*]}"
  if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
    log "apt-get update (package lists stale or missing)"
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi

# --- npm packages (playwright-core, binaryen 132 for wasm-opt) -----------------
npm_stamp="node_modules/.package-lock.json"
if [[ -f "$npm_stamp" && "$npm_stamp" -nt package-lock.json && -x node_modules/.bin/wasm-opt ]] \
   && [[ -d node_modules/playwright-core ]]; then
  log "npm packages: present"
else
  log "npm ci"
  npm ci --no-audit --no-fund
fi
wasm_opt_version="$(wasm-opt --version 2>/dev/null || true)"
case "$wasm_opt_version" in
  *"version 132"*) log "wasm-opt: $wasm_opt_version ($(command -v wasm-opt))" ;;
  *) echo "[install-tools] error: wasm-opt on PATH is not binaryen 132: '$wasm_opt_version' ($(command -v wasm-opt || echo none))" >&2; exit 1 ;;
esac

# --- crate sources ---------------------------------------------------------------
# trunk runs cargo with --offline (Trunk.toml); fetch every platform's dependencies
# (including the wasm32-only ones) now. Fast when they are already downloaded.
log "cargo fetch"
cargo fetch --quiet

log "done"
