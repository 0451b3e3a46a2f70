"""Local vs e2e vs e2e+ds dictionaries on the shipped model: geometry and activation analysis.

    nice -n 10 python scripts/geometry_experiment.py --out runs/geometry     # ~25 min, 2 CPUs

Trains six SAEs at blocks.2.hook_resid_pre of sae-kit-tiny (three losses x seeds 0 and 1, λ
chosen per loss for similar L0), then runs `sae-kit compare`'s analysis on them: within-SAE
max cosine (orthogonality), cross-seed and cross-type max cosine with permutation tests, each
dictionary's max cosine to its own initial decoder (how far it moved), the 2-D embedding and
the ‖â‖/‖a‖ and cos(â, a) activation analysis. Finished runs are reused, so an interrupted
experiment resumes. Writes --out/compare/ (summary.json, PNGs) and --out/results.md.
Results: docs/experiments/geometry.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from sae_kit.eval.analysis.compare import compare_sources
from sae_kit.eval.analysis.geometry import permutation_test
from sae_kit.record.config import TrainConfig
from sae_kit.store.sae_dir import CONFIG
from sae_kit.train.api import train_saes

HOOK_POINT = "blocks.2.hook_resid_pre"
# λ per loss, picked from docs/experiments/e2e-vs-local.md's sweep so the L0s land close: local
# needs a larger λ than e2e for the same L0 on this model.
LAMBDAS = {"local": 4.0, "e2e": 3.0, "e2e+ds": 10.0}
SEEDS = (0, 1)
# Long enough (and at a high enough lr) that each decoder clearly leaves its orthogonal start:
# 1,200 steps of 4 windows of 64 tokens at 4x the built-in lr. Short windows, small batches and
# 8x dictionaries keep the six runs within ~20 minutes on a busy 2-core CPU.
TRAINING = {"n_samples": 4800, "batch_size": 4, "context": 64, "lr": 8e-3, "dict_ratio": 8.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/geometry", help="Directory for runs and results.")
    parser.add_argument("--tokens", type=int, default=100_000,
                        help="Held-out tokens for alive elements and the activation analysis.")
    parser.add_argument("--train", nargs="+", metavar="RUN", default=None,
                        help="Only train these runs (e.g. e2eds-seed1) and stop: to spread the "
                        "training over several processes.")
    return parser.parse_args()


def run_name(loss: str, seed: int) -> str:
    return f"{loss.replace('+', '')}-seed{seed}"


def train_one(out: Path, loss: str, seed: int) -> Path:
    run_dir = out / run_name(loss, seed)
    if (run_dir / HOOK_POINT / CONFIG).exists():
        return run_dir
    settings: dict[str, Any] = {
        "loss": loss, "sparsity_coeff": LAMBDAS[loss], "seed": seed, "device": "cpu",
        "output_dir": str(run_dir), "log_every": 50, "save_every": 10_000,
        "hook_points": [HOOK_POINT], **TRAINING,
    }
    started = time.perf_counter()
    train_saes(TrainConfig(**settings))
    print(f"{run_dir.name}: trained in {time.perf_counter() - started:.0f} s", file=sys.stderr,
          flush=True)
    return run_dir


def _pair(summary: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    return next(p for p in summary["pairs"] if {p["a"], p["b"]} == {a, b})


def _both_ways(values: dict[str, torch.Tensor], a: str, b: str) -> torch.Tensor:
    """Max cosines of a pair in both directions, pooled: one consistency sample per pair."""
    return torch.cat([values[f"across/{a}->{b}"], values[f"across/{b}->{a}"]])


def markdown(summary: dict[str, Any], values: dict[str, torch.Tensor]) -> str:
    """The tables of docs/experiments/geometry.md."""
    lines = ["| SAE | λ | L0 | alive | within max cos | random max cos | max cos to own init | "
             "same-index cos to init | ‖â‖/‖a‖ | cos(â, a) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, s in summary["saes"].items():
        a = s["activations"]
        lines.append(
            f"| {label} | {s['sparsity_coeff']:g} | {a['l0']:.1f} | {s['n_alive']}/{s['n_dict']} "
            f"| {s['within_max_cos_mean']:.3f} | {s['random_max_cos_mean']:.3f} | "
            f"{s['init_max_cos_mean']:.3f} | {s['init_same_index_cos_mean']:.3f} | "
            f"{a['l2_ratio']:.3f} | {a['cosine']:.3f} |")
    lines += ["", "| pair | kind | A→B mean max cos | B→A mean max cos |",
              "| --- | --- | ---: | ---: |"]
    names = [run_name(loss, seed) for loss in LAMBDAS for seed in SEEDS]
    for a, b in itertools.combinations(names, 2):
        kind = ("cross-seed" if a.split("-")[0] == b.split("-")[0] else
                "cross-type, same seed (same initial decoder)" if a[-1] == b[-1] else
                "cross-type, different seeds")
        p = _pair(summary, a, b)
        lines.append(f"| {p['a']} / {p['b']} | {kind} | {p['a_to_b_mean']:.3f} | "
                     f"{p['b_to_a_mean']:.3f} |")
    lines += ["", "| test (two-sided permutation test of means, 2,000 permutations) | "
              "mean 1 | mean 2 | p |", "| --- | ---: | ---: | ---: |"]
    for loss in ("local", "e2eds"):
        for seed in SEEDS:
            x, y = values[f"within/e2e-seed{seed}"], values[f"within/{loss}-seed{seed}"]
            lines.append(f"| within: e2e-seed{seed} vs {loss}-seed{seed} | {x.mean():.3f} | "
                         f"{y.mean():.3f} | {permutation_test(x, y):.4f} |")
    e2e = _both_ways(values, "e2e-seed0", "e2e-seed1")
    for loss in ("local", "e2eds"):
        other = _both_ways(values, f"{loss}-seed0", f"{loss}-seed1")
        lines.append(f"| cross-seed: e2e vs {loss} | {e2e.mean():.3f} | {other.mean():.3f} | "
                     f"{permutation_test(e2e, other):.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    if args.train:
        for loss in LAMBDAS:
            for seed in SEEDS:
                if run_name(loss, seed) in args.train:
                    train_one(out, loss, seed)
        return
    runs = [train_one(out, loss, seed) for loss in LAMBDAS for seed in SEEDS]
    started = time.perf_counter()
    summary = compare_sources([str(r) for r in runs], HOOK_POINT, out / "compare",
                              n_tokens=args.tokens, device="cpu")
    print(f"compare: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    values = load_file(str(out / "compare" / "maxcos.safetensors"))
    (out / "results.md").write_text(markdown(summary, values))
    print(out / "results.md")


if __name__ == "__main__":
    main()
