#!/usr/bin/env bash
# How the CPU towers scale with cores, against ONNX Runtime on the same cores (issue 12:
# "thread count matching the cores (the 16-core scaling)"). For each core count N, the
# paired rounds of scripts/bench_reference.py run under `taskset -c 0-(N-1)`: monoscope's
# engines (one per core it may use) and ORT's intra-op threads (scripts/cores.py) both see
# N cores. Prints one table: items/s of each side and their ratio per tower, batch and N.
#
#   scripts/cpu_scaling.sh BIN OUTDIR [N ...]     (default N: 1 2 4 8 ... up to nproc)
#
# BIN: a release build of monoscope. Needs python3 with torch, transformers, onnx and
# onnxruntime (scripts/requirements.txt) and taskset (util-linux).
set -euo pipefail
bin=$1
out=$2
shift 2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$out"
cores=$(nproc)
if (($# > 0)); then
    counts=("$@")
else
    counts=()
    for ((n = 1; n < cores; n *= 2)); do counts+=("$n"); done
    counts+=("$cores")
fi
for n in "${counts[@]}"; do
    if ((n < 1 || n > cores)); then
        echo "cpu_scaling.sh: $n cores asked, this machine has $cores" >&2
        exit 2
    fi
    echo "### $n cores" >&2
    taskset -c "0-$((n - 1))" python3 "$here/bench_reference.py" --monoscope "$bin" \
        --rounds 1 --no-pytorch --json "$out/scale-$n.json" > "$out/scale-$n.log"
done
python3 - "$out" "${counts[@]}" <<'PY'
import json, sys
out, counts = sys.argv[1], sys.argv[2:]
print("| cores | tower | batch | monoscope items/s | ORT items/s | / ORT |")
print("|---:|---|---:|---:|---:|---:|")
for n in counts:
    run = json.load(open(f"{out}/scale-{n}.json"))
    res = {(r["backend"], r["tower"], r["batch"]): r["items_per_s"] for r in run["rounds"][0]}
    for tower in ("image", "text"):
        for b in (1, 32):
            m, o = res[("monoscope", tower, b)], res[("ort", tower, b)]
            print(f"| {run['threads']} | {tower} | {b} | {m:.2f} | {o:.2f} | {m / o:.2f} |")
PY
