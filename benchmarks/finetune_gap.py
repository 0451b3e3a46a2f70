"""How much of the local -> e2e CE gap a short KL fine-tune (kl+mse) closes, at equal L0.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/finetune_gap.py --out runs/finetune-gap

On sae-kit-tiny (blocks.2.hook_resid_pre, 16x dictionary, the built-in model's defaults: 800
windows of 256 tokens, lr 2e-3), one total token budget per recipe:

- local: MSE for all windows;
- local + KL fine-tune for f = 5%, 10%, 25%: MSE for (1 - f) of the windows, then
  ``--loss kl+mse --init-from`` that run for the other f (its own warm-up and cosine; lambda is the
  local run's, kept by kl+mse's L0 rule);
- e2e: KL for all windows, at two lambdas bracketing the local L0; the e2e CE increase at the
  local run's L0 is interpolated linearly in log L0 between them.

Every run is evaluated on the held-out split as ``sae-kit eval`` does. Printed (and written to
--out/results.md): L0, CE-loss increase, the share of the gap closed, (CE_local - CE) /
(CE_local - CE_e2e at that L0), wall time and tokens spent. Finished runs (with an eval.json)
are reused. Results: docs/experiments/finetune.md.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sae_kit.eval.evaluation import evaluate_run
from sae_kit.record.config import TrainConfig
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import RunDir
from sae_kit.train.api import train_saes as train

CONTEXT = 256  # the built-in model's window (sae-kit-tiny's maximum)
BASE = {"dict_ratio": 16.0, "device": "cpu", "log_every": 25}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/finetune-gap", help="Directory for the runs.")
    parser.add_argument("--lambda", dest="lam", type=float, default=4.0,
                        help="The local SAE's lambda (4: L0 ~70, where local and e2e differ most).")
    parser.add_argument("--e2e", type=float, nargs=2, default=[2.0, 4.0],
                        help="Two e2e lambdas whose L0 bracket the local one.")
    parser.add_argument("--windows", type=int, default=800, help="Training windows per recipe.")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.10, 0.25],
                        help="Shares of the windows spent on the KL fine-tune.")
    parser.add_argument("--balance-steps", type=int, default=2,
                        help="kl+mse's balance window in micro-batches (the 5%% fine-tune is 5).")
    parser.add_argument("--n-tokens", type=int, default=100_000, help="Held-out tokens.")
    return parser.parse_args()


def run_one(run_dir: Path, settings: dict[str, Any], n_tokens: int) -> dict[str, Any]:
    """Train (unless done) and evaluate one run; its eval.json data plus the training time."""
    timing = run_dir / "timing.json"
    if RunDir(run_dir).eval.exists() and timing.exists():
        return {**read_json(RunDir(run_dir).eval), **read_json(timing)}
    started = time.perf_counter()
    train(TrainConfig(**BASE, **settings, output_dir=str(run_dir)))
    seconds = time.perf_counter() - started
    write_json_atomic(timing, {"train_seconds": seconds})
    result = evaluate_run(str(run_dir), n_tokens, device="cpu")
    print(f"{run_dir.name}: trained in {seconds:.0f} s", file=sys.stderr, flush=True)
    return {**result, "train_seconds": seconds}


def metrics(result: dict[str, Any]) -> dict[str, float]:
    (sae,) = result["saes"].values()
    return {"l0": sae["l0"], "ce": sae["ce_loss_increase"]}


def e2e_at(l0: float, points: list[dict[str, float]]) -> float:
    """The e2e CE increase at ``l0``, linear in log L0 between (or beyond) the two runs."""
    a, b = sorted(points, key=lambda p: p["l0"])
    t = (math.log(l0) - math.log(a["l0"])) / (math.log(b["l0"]) - math.log(a["l0"]))
    return a["ce"] + t * (b["ce"] - a["ce"])


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows: list[dict[str, Any]] = []

    def local(windows: int) -> tuple[Path, dict[str, Any]]:
        run_dir = out / f"local-{windows}"
        settings = {"loss": "local", "sparsity_coeff": args.lam, "n_samples": windows}
        return run_dir, run_one(run_dir, settings, args.n_tokens)

    _, full = local(args.windows)
    rows.append({"recipe": "local", **metrics(full), "seconds": full["train_seconds"],
                 "windows": args.windows})
    for fraction in args.fractions:
        tuned = round(args.windows * fraction)
        source, pre = local(args.windows - tuned)
        ft_dir = out / f"local-{args.windows - tuned}+kl-{tuned}"
        ft = run_one(ft_dir, {"loss": "kl+mse", "init_from": str(source), "n_samples": tuned,
                              "loss_options": {"balance_steps": args.balance_steps}},
                     args.n_tokens)
        rows.append({"recipe": f"local + KL fine-tune {fraction:.0%}", **metrics(ft),
                     "seconds": pre["train_seconds"] + ft["train_seconds"],
                     "windows": args.windows, "source_l0": metrics(pre)["l0"]})
    e2e = []
    for lam in args.e2e:
        result = run_one(out / f"e2e-lambda{lam:g}", {"loss": "e2e", "sparsity_coeff": lam,
                                                      "n_samples": args.windows}, args.n_tokens)
        e2e.append(metrics(result))
        rows.append({"recipe": f"e2e (lambda {lam:g})", **e2e[-1],
                     "seconds": result["train_seconds"], "windows": args.windows})
    text = report(rows, e2e, uptime)
    (out / "results.md").write_text(text + "\n")
    print(text)


def report(rows: list[dict[str, Any]], e2e: list[dict[str, float]], uptime: str) -> str:
    local_ce = rows[0]["ce"]
    lines = ["| recipe | L0 | CE-loss increase | e2e CE at this L0 | gap closed | wall s | "
             "tokens |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        target = e2e_at(row["l0"], e2e)
        gap = local_ce - e2e_at(row["l0"], e2e)
        closed = (local_ce - row["ce"]) / gap if gap > 0 and row["recipe"] != "local" else None
        lines.append(f"| {row['recipe']} | {row['l0']:.1f} | {row['ce']:.4f} | {target:.4f} | "
                     f"{'' if closed is None else f'{closed:.0%}'} | {row['seconds']:.0f} | "
                     f"{row['windows'] * CONTEXT:,} |")
    sources = [f"{r['recipe']}: source L0 {r['source_l0']:.1f}" for r in rows if "source_l0" in r]
    return "\n".join([*lines, "", "; ".join(sources), f"load: {uptime}"])


if __name__ == "__main__":
    main()
