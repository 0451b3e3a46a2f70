#!/usr/bin/env bash
# The prepared GPU check: under 8 minutes on one GPU, one table at the end.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT, else ./gpu-check
#
# For the first session that is lent a GPU. Needs a python3 whose torch sees CUDA; installs
# sae-kit and the first-party plugins in editable mode without dependencies (the machine is
# offline; packages it lacks, e.g. `datasets`, travel as wheels in ./.whl: see
# /work/.library/device/README.md), then runs, each step under its own time limit:
#   1. the tests that need CUDA (they skip themselves elsewhere), and the unit tests on CUDA's box;
#   2. benchmarks/bench_e2e_step.py at fp32 and at --dtype bf16 (both models, medians);
#   3. a whole default run (`sae-kit train`, built-in model) eager and with --compile;
#   4. benchmarks/bench_peers.py --device cuda, where the peers are installed.
# and prints one table of the figures (also written to OUT_DIR/table.md).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "error: torch sees no CUDA device here; this check is for a GPU machine" >&2; exit 2; }
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . -e plugins/sae-kit-gpt2 \
    -e plugins/sae-kit-pythia -e plugins/sae-kit-llama > "$out/install.log" 2>&1 \
    || echo "warning: editable install failed (see $out/install.log); using the tree on PYTHONPATH"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 SAE_KIT_LOG_SECONDS=600
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: run it, keep its log, note its status
    local name=$1 limit=$2; shift 2
    local started=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "$name $? $((SECONDS - started))" >> "$out/status.txt"
}
: > "$out/status.txt"
step tests 120 python3 -m pytest -q -rs tests/train/test_precision.py \
    tests/architectures/test_sparse_sae.py tests/losses/test_chunked_kl.py tests/losses/test_kl.py
step e2e_fp32 120 python3 benchmarks/bench_e2e_step.py --device cuda --reps 5 \
    --json "$out/e2e_fp32.json"
step e2e_bf16 120 python3 benchmarks/bench_e2e_step.py --device cuda --dtype bf16 --reps 5 \
    --json "$out/e2e_bf16.json"
step train_eager 60 python3 -m sae_kit train --device cuda --out "$out/run-eager"
step train_compile 90 python3 -m sae_kit train --device cuda --compile --out "$out/run-compile"
if python3 -c "import sparsify" 2>/dev/null || python3 -c "import sae_lens" 2>/dev/null; then
    step peers 120 python3 benchmarks/bench_peers.py --device cuda --rounds 2 --steps 5 \
        --json "$out/peers.json"
fi
python3 - "$out" <<'PY' | tee "$out/table.md"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print(f"GPU: {(out / 'gpu.txt').read_text().strip()}\n")
print("| step | exit | seconds |\n| --- | ---: | ---: |")
for line in (out / "status.txt").read_text().split("\n"):
    if line:
        name, code, secs = line.split()
        print(f"| {name} | {code} | {secs} |")
for name in ("e2e_fp32", "e2e_bf16", "peers"):
    path = out / f"{name}.json"
    if path.is_file():
        print(f"\n{name}:\n```\n{json.dumps(json.loads(path.read_text()), indent=1)[:3000]}\n```")
for name in ("train_eager", "train_compile"):
    log = out / f"{name}.log"
    if log.is_file():
        done = [ln for ln in log.read_text().splitlines() if ln.startswith("done:")]
        print(f"\n{name}: {done[-1] if done else 'no result: see ' + str(log)}")
PY
