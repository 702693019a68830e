#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz.rs for SECONDS each (default 60) and prints, per
# target, the cases run, how many loaded, the distinct errors, the largest allocation and
# the slowest case. Failing inputs land in tests/out/fuzz/.
#   scripts/fuzz.sh [SECONDS] [FILTER]       e.g. scripts/fuzz.sh 600 fuzz_images
# Env: MONOSCOPE_FUZZ_CASES=N runs N cases per target instead of a time budget (SECONDS is
#      then ignored); MONOSCOPE_FUZZ_SEED=S picks another mutation stream (default 1).
# `cargo test` (and so .ci/run) runs the same targets for 150 cases each.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/monoscope/target}"
SECONDS_PER_TARGET="${1:-60}"
FILTER="${2:-}"
if [[ -z "${MONOSCOPE_FUZZ_CASES:-}" ]]; then
  export MONOSCOPE_FUZZ_SECONDS="$SECONDS_PER_TARGET"
fi
# Build, then run the test binary itself: `cargo test` would hold the build directory's lock
# for the whole (long) run.
BIN="$(cargo test --test fuzz --no-run 2>&1 | sed -n 's/.*Executable tests\/fuzz.rs (\(.*\))/\1/p')"
[[ -x "$BIN" ]] || { echo "fuzz.sh: cannot find the fuzz test binary" >&2; exit 1; }
# The binary's working directory must be the repository root (fixtures are read from it).
CARGO_MANIFEST_DIR="$ROOT" "$BIN" --nocapture $FILTER 2>&1 | grep -E '^(fuzz |case |test result|thread )'
