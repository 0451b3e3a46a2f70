"""How much of the local -> e2e CE gap a short KL fine-tune closes at equal L0 (and LoRA).

    OMP_NUM_THREADS=1 python benchmarks/finetune_gap.py --out runs/finetune-gap [--seed 1]

Every run is one ``sae-kit train`` command on sae-kit-tiny (``--layer 2``: blocks.2.hook_resid_pre,
``--dict-ratio 16``, the built-in model's defaults: lr 2e-3, batches of 8 windows of 256 tokens),
all with the same total budget of ``--windows`` windows, run one after another:

- local: MSE for all windows at ``--lambda``; two more local lambdas (``--local-lambdas``) only
  place the local curve, so that each row is compared with local *at its own L0*;
- the recipe, ``--loss kl+mse --finetune-fraction F`` for each F: MSE pre-training on the first
  1 - F of the windows, the kl+mse fine-tune on the F after them (the one-command recipe of
  docs/finetune.md; its L0 rule keeps the source's L0);
- local + LoRA (optional, skipped with the reason printed when ``sae-kit train`` has no
  ``--lora``): the SAE of the 10% recipe's pre-training frozen, adapters trained for the other
  10% of the windows, so the same budget again;
- e2e: KL for all windows at each ``--e2e`` lambda (chosen to bracket the local L0).

Each run is then evaluated by ``sae-kit eval`` on the same held-out tokens (the pydoc eval
split). CE increase of local and e2e at a row's L0 is interpolated linearly in log L0 between
their runs, and gap closed = (local(L0) - CE) / (local(L0) - e2e(L0)). Printed as a table and
written to OUT/results.md and OUT/results.json. Finished runs (with eval.json and timing.json)
are reused. Results: docs/experiments/finetune.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONTEXT = 256  # the built-in model's window (sae-kit-tiny's maximum)
COMMON = ["--layer", "2", "--dict-ratio", "16", "--device", "cpu", "--log-every", "25"]
ALIVE_TOKENS = 2_560  # alive counts are not compared here; 10 windows keep each eval short


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/finetune-gap", help="Directory for the runs.")
    parser.add_argument("--lambda", dest="lam", type=float, default=4.0,
                        help="lambda of local and the recipes (4: L0 ~70, where local and e2e "
                             "differ most, docs/experiments/e2e-vs-local.md).")
    parser.add_argument("--local-lambdas", type=float, nargs="*", default=[3.0, 5.0],
                        help="Further local lambdas that place the local curve around --lambda.")
    parser.add_argument("--e2e", type=float, nargs="+", default=[2.0, 3.0, 4.0],
                        help="e2e lambdas whose L0 bracket the local one.")
    parser.add_argument("--windows", type=int, default=800, help="Training windows per recipe.")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.10, 0.25],
                        help="Shares of the windows spent on the KL fine-tune.")
    parser.add_argument("--balance-steps", type=int, default=2,
                        help="kl+mse's balance window in micro-batches (its default 10 is "
                             "longer than the 5%% fine-tune's 5).")
    parser.add_argument("--lora-fraction", type=float, default=0.10,
                        help="Share of the windows the LoRA adapters train on.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every run.")
    return parser.parse_args()


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, file=sys.stderr, flush=True)


def sae_kit(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("sae-kit") or "sae-kit"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([exe, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"sae-kit {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def run_one(run_dir: Path, train_args: list[str], seed: int) -> dict[str, Any]:
    """Train (unless done) and evaluate one run: its eval.json plus the command's wall time."""
    timing, evaluated = run_dir / "timing.json", run_dir / "eval.json"
    if timing.exists() and evaluated.exists():
        return {**json.loads(evaluated.read_text()), **json.loads(timing.read_text())}
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run stopped half-way is trained again from the start
    command = ["train", *COMMON, "--seed", str(seed), *train_args, "--out", str(run_dir)]
    log(f"{run_dir.name}: sae-kit {' '.join(command)}")
    started = time.perf_counter()
    sae_kit(*command)
    record = {"train_seconds": time.perf_counter() - started, "command": "sae-kit " +
              " ".join(command), "finetune_seconds": phase_seconds(run_dir)}
    result = evaluate(run_dir)
    timing.write_text(json.dumps(record, indent=2) + "\n")
    log(f"{run_dir.name}: trained in {record['train_seconds']:.0f} s")
    return {**result, **record}


def evaluate(run_dir: Path) -> dict[str, Any]:
    """``sae-kit eval`` of ``run_dir`` on the held-out split (its eval.json when done)."""
    if (run_dir / "eval.json").exists():
        return json.loads((run_dir / "eval.json").read_text())
    return json.loads(sae_kit("eval", str(run_dir), "--device", "cpu", "--json",
                              "--alive-tokens", str(ALIVE_TOKENS)).stdout)


def phase_seconds(run_dir: Path) -> float | None:
    """A recipe's fine-tune phase: from the pre-training's saved SAE to the fine-tune's."""
    pre = sorted((run_dir / "pretrain").glob("blocks.*/sae.safetensors"))
    tuned = sorted(run_dir.glob("blocks.*/sae.safetensors"))
    if not pre or not tuned:
        return None
    return tuned[0].stat().st_mtime - pre[0].stat().st_mtime


def lora_missing() -> str | None:
    """Why the LoRA row cannot run here, or None."""
    if "--lora" not in sae_kit("train", "--help").stdout:
        return "this sae-kit's `train` has no --lora option"
    try:
        import peft  # noqa: F401
    except ImportError:
        return "peft is not installed (pip install 'sae-kit[lora]')"
    return None


def row(name: str, result: dict[str, Any], windows: int, **extra: Any) -> dict[str, Any]:
    """One table row; a --lora run's figures are those with its adapters on."""
    (sae,) = result.get("lora", result)["saes"].values()
    return {"recipe": name, "l0": sae["l0"], "ce_increase": sae["ce_loss_increase"],
            "kl": sae["kl"], "train_seconds": result["train_seconds"],
            "finetune_seconds": result.get("finetune_seconds"), "windows": windows,
            "tokens": windows * CONTEXT, "command": result["command"], **extra}


def at_l0(l0: float, points: list[dict[str, Any]]) -> float:
    """CE increase at ``l0``, linear in log L0 between the two nearest runs (beyond: the end
    pair's line)."""
    pts = sorted(points, key=lambda p: p["l0"])
    i = next((k for k in range(1, len(pts) - 1) if l0 < pts[k]["l0"]), len(pts) - 1)
    a, b = pts[i - 1], pts[i]
    t = (math.log(l0) - math.log(a["l0"])) / (math.log(b["l0"]) - math.log(a["l0"]))
    return a["ce_increase"] + t * (b["ce_increase"] - a["ce_increase"])


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lam, n = f"{args.lam:g}", args.windows
    local_curve, e2e_curve, rows = [], [], []
    for value in sorted({args.lam, *args.local_lambdas}):
        result = run_one(out / f"local-lambda{value:g}", [
            "--loss", "local", "--lambda", f"{value:g}", "--n-samples", str(n)], args.seed)
        local_curve.append(row(f"local (lambda {value:g})", result, n))
    rows.append(next(r for r in local_curve if r["recipe"] == f"local (lambda {lam})"))
    for fraction in args.fractions:
        result = run_one(out / f"recipe-{fraction:g}", [
            "--loss", "kl+mse", "--finetune-fraction", f"{fraction:g}", "--lambda", lam,
            "--n-samples", str(n), "-O", f"balance_steps={args.balance_steps}"], args.seed)
        (source,) = evaluate(out / f"recipe-{fraction:g}" / "pretrain")["saes"].values()
        rows.append(row(f"local + KL fine-tune {fraction:.0%}", result, n,
                        finetune_windows=round(n * fraction), source_l0=source["l0"],
                        source_ce_increase=source["ce_loss_increase"]))
    skipped = lora_missing() or (None if args.lora_fraction in args.fractions else
                                 f"--lora-fraction {args.lora_fraction:g} is not in --fractions")
    if skipped:
        log(f"LoRA row skipped: {skipped}")
    else:
        rows.append(lora_row(out, args))
    for value in args.e2e:
        result = run_one(out / f"e2e-lambda{value:g}", [
            "--loss", "e2e", "--lambda", f"{value:g}", "--n-samples", str(n)], args.seed)
        e2e_curve.append(row(f"e2e (lambda {value:g})", result, n))
    rows += e2e_curve
    for r in rows:
        local_ce, e2e_ce = at_l0(r["l0"], local_curve), at_l0(r["l0"], e2e_curve)
        gap = local_ce - e2e_ce
        r.update(local_ce_at_l0=local_ce, e2e_ce_at_l0=e2e_ce,
                 gap_closed=(local_ce - r["ce_increase"]) / gap if gap > 0 else None)
    report = {"rows": rows, "local_curve": local_curve, "lora_skipped": skipped,
              "invocation_seconds": time.perf_counter() - started, "uptime": uptime(),
              "settings": vars(args)}
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(rows, skipped)
    (out / "results.md").write_text(text + "\n")
    print(text)


def lora_row(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """LoRA adapters on the model after the frozen SAE of the 10% recipe's pre-training, for the
    rest of the same window budget."""
    n = args.windows
    tuned = round(n * args.lora_fraction)
    recipe_dir = out / f"recipe-{args.lora_fraction:g}"  # trained above: a --fractions value
    result = run_one(out / f"lora-{args.lora_fraction:g}", [
        "--lora", "--loss", "e2e", "--init-from", str(recipe_dir / "pretrain"),
        "--n-samples", str(tuned), "--skip-samples", str(n - tuned)], args.seed)
    recipe = json.loads((recipe_dir / "timing.json").read_text())
    pre_seconds = recipe["train_seconds"] - (recipe["finetune_seconds"] or 0.0)
    result = {**result, "finetune_seconds": result["train_seconds"],
              "train_seconds": pre_seconds + result["train_seconds"]}
    (bare,) = result["saes"].values()  # the frozen SAE with the adapters off
    return row(f"local + LoRA {args.lora_fraction:.0%}", result, n, finetune_windows=tuned,
               source_l0=bare["l0"], source_ce_increase=bare["ce_loss_increase"])


def table(rows: list[dict[str, Any]], skipped: str | None) -> str:
    lines = ["| recipe | L0 | CE increase | KL | local CE at this L0 | e2e CE at this L0 | "
             "gap closed | wall s (fine-tune) | tokens |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        closed = "" if r["gap_closed"] is None else f"{r['gap_closed']:.0%}"
        tune = "" if r["finetune_seconds"] is None else f" ({r['finetune_seconds']:.0f})"
        lines.append(
            f"| {r['recipe']} | {r['l0']:.1f} | {r['ce_increase']:.4f} | {r['kl']:.4f} | "
            f"{r['local_ce_at_l0']:.4f} | {r['e2e_ce_at_l0']:.4f} | {closed} | "
            f"{r['train_seconds']:.0f}{tune} | {r['tokens']:,} |")
    sources = [f"{r['recipe']}: {source_name(r)} L0 {r['source_l0']:.1f}, CE increase "
               f"{r['source_ce_increase']:.4f}" for r in rows if "source_l0" in r]
    lines += ["", *sources]
    if skipped:
        lines += ["", f"local + LoRA: not run ({skipped})."]
    return "\n".join(lines)


def source_name(r: dict[str, Any]) -> str:
    return ("the frozen SAE, adapters off," if "LoRA" in r["recipe"]
            else "source (its pre-training)")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
