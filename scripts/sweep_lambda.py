"""Sweep lambda for `local` and `e2e` SAEs on the shipped model; evaluate and plot the Pareto front.

    nice -n 10 python scripts/sweep_lambda.py --out runs/sweep     # ~20 min on a 2-core CPU

One SAE per (loss, lambda) at the middle layer (blocks.2.hook_resid_pre) of sae-kit-tiny, trained
on the built-in pydoc text and evaluated on its held-out split, exactly as `sae-kit train` and
`sae-kit eval` would, with the built-in model's defaults except a 16x (not 60x) dictionary.
Writes, into --out: one run directory per SAE (with its eval.json), results.md (the table) and
pareto.png (L0 vs CE-loss increase). Finished runs (those with an eval.json) are reused, so an
interrupted sweep resumes where it stopped. Results: docs/experiments/e2e-vs-local.md.

`sae-kit sweep docs/sweeps/e2e-vs-local.toml` now does the same in one command, training each
loss's five lambdas in one shared pass (to the same weights); this script is kept as the
baseline that comparison was measured against.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from sae_kit.eval.evaluation import evaluate_run
from sae_kit.eval.pareto import plot_pareto
from sae_kit.record.config import TrainConfig
from sae_kit.store.jsonio import read_json
from sae_kit.store.run_dir import RunDir
from sae_kit.sweep.report import table
from sae_kit.train.api import train_saes

# Chosen so the two losses' L0 ranges overlap (e2e needs a larger lambda for the same L0,
# since KL is a smaller number than the local MSE of this model's residual stream).
LOCAL_LAMBDAS = [0.5, 1.0, 2.0, 4.0, 8.0]
E2E_LAMBDAS = [0.5, 1.0, 2.0, 4.0, 8.0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/sweep", help="Directory for runs and results.")
    parser.add_argument("--local", type=float, nargs="+", default=LOCAL_LAMBDAS,
                        help="Lambdas for the local loss.")
    parser.add_argument("--e2e", type=float, nargs="+", default=E2E_LAMBDAS,
                        help="Lambdas for the e2e loss.")
    parser.add_argument("--n-samples", type=int, default=None,
                        help="Training windows per SAE (default: sae-kit's built-in default).")
    parser.add_argument("--dict-ratio", type=float, default=16.0,
                        help="Dictionary size / d_model (2,048 elements; 60 would take ~1.5x as "
                        "long).")
    parser.add_argument("--n-tokens", type=int, default=100_000, help="Held-out tokens.")
    return parser.parse_args()


def run_one(out: Path, loss: str, lam: float, args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless already done) and evaluate one SAE; returns its eval.json data."""
    run_dir = out / f"{loss}-lambda{lam:g}"
    if RunDir(run_dir).eval.exists():
        return read_json(RunDir(run_dir).eval)
    settings: dict[str, Any] = {"loss": loss, "sparsity_coeff": lam, "output_dir": str(run_dir),
                                "device": "cpu", "log_every": 25}
    if args.n_samples:
        settings["n_samples"] = args.n_samples
    if args.dict_ratio:
        settings["dict_ratio"] = args.dict_ratio
    started = time.perf_counter()
    train_saes(TrainConfig(**settings))
    trained = time.perf_counter()
    result = evaluate_run(str(run_dir), args.n_tokens, device="cpu")
    print(f"{run_dir.name}: trained in {trained - started:.0f} s, evaluated in "
          f"{time.perf_counter() - trained:.0f} s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [("local", lam) for lam in args.local] + [("e2e", lam) for lam in args.e2e]
    results = [run_one(out, loss, lam, args) for loss, lam in jobs]
    plot_pareto(results, out / "pareto.png")
    text = table(results)
    (out / "results.md").write_text(text + "\n")
    print(text)
    print(f"total {time.perf_counter() - started:.0f} s; plot: {out / 'pareto.png'}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
