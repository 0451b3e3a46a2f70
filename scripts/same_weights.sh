#!/usr/bin/env bash
# Same seed, same weights: three small runs (e2e/relu, e2e+ds, local/topk) and their eval, then
# the sha256 of each SAE's weights and eval.json. Run it before and after a refactor; the lines
# must be identical. Usage: bash scripts/same_weights.sh [OUT_DIR]   (default /tmp/same-weights)
set -euo pipefail
out="${1:-/tmp/same-weights}"
rm -rf "$out" && mkdir -p "$out"
export OMP_NUM_THREADS=1 SAE_KIT_LOG_SECONDS=600
common=(--n-samples 64 --seed 3 --save-every 1000)
sae-kit train --loss e2e --architecture relu --lambda 2 "${common[@]}" --out "$out/e2e" >/dev/null 2>&1
sae-kit train --loss e2e+ds --lambda 2 "${common[@]}" --out "$out/e2e_ds" >/dev/null 2>&1
sae-kit train --loss local --architecture topk --arch-option k=16 "${common[@]}" --out "$out/local_topk" >/dev/null 2>&1
for run in e2e e2e_ds local_topk; do
    sae-kit eval "$out/$run" --n-tokens 2048 >/dev/null 2>&1
    for f in "$out/$run"/blocks.*/sae.safetensors; do
        echo "$run/${f#"$out/$run/"} $(sha256sum "$f" | cut -c1-16)"
    done
    # eval.json names its run directory; hash the rest so OUT_DIR does not matter.
    echo "$run/eval.json $(python -c 'import json, sys; d = json.load(open(sys.argv[1]))
d.pop("run_dir", None); print(json.dumps(d, sort_keys=True))' "$out/$run/eval.json" \
        | sha256sum | cut -c1-16)"
done
