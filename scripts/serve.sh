#!/usr/bin/env bash
# THE serve command: builds the web app (release) and serves it on http://127.0.0.1:${PORT:-8080}/
# with trunk (rebuilds on changes). Options: ?backend=auto|webgpu|cpu
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/monoscope/target}"
export PATH="$ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"

if [[ "${MONOSCOPE_SKIP_INSTALL:-0}" != 1 ]]; then
  scripts/install-tools.sh
fi

exec trunk serve --release --address "${ADDRESS:-127.0.0.1}" --port "${PORT:-8080}" "$@"
