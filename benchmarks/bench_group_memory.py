"""Peak memory of a group's training steps: the clean pass scoped to its batch, before and after.

    python benchmarks/bench_group_memory.py                  # built-in model, 3 e2e members
    python benchmarks/bench_group_memory.py --before 178f8eb --steps 3

A group shares one clean pass per batch (``SharedClean``) and, for the KL losses, the clean
output distribution derived from it (up to ``kl_cache_mb``). Three trees are measured in the
same invocation, each in a fresh single-threaded process: "before" is sae-kit at ``--before``
(the loop cleared the shared cache itself after each micro-batch; extracted with
``git archive``), "after" is this tree (``Splice.batch()`` frees the pass at the batch's end and
``SharedClean.get`` frees a stale one before the next pass), and "no-clear" is this tree with
``SharedClean.clear`` disabled: what simply dropping the loop's clear would have done (a stale
pass and its KL cache alive through the optimizer step and into the next batch's pass). It is
the control that shows the measurement can see one extra pass.

Each process builds the group, then resets the kernel's peak-RSS mark (/proc/self/clear_refs)
and trains --steps optimizer steps (``train_step``); the peak is VmHWM minus the RSS before
the steps. "Held at an optimizer step" is the most RSS above that base as an optimizer step
starts, from step 2 on (step 1's also allocates Adam's state). Large buffers are mmapped and
returned (``MALLOC_MMAP_THRESHOLD_``), so RSS follows what is alive rather than what the C
allocator keeps. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = [0.5, 1.0, 2.0]


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(args: argparse.Namespace, variant: str) -> dict:
    """Build the group in this process and train ``args.steps`` steps; peak bytes above base."""
    import gc

    import torch

    from sae_kit.model.splice import SharedClean
    from sae_kit.record.config import TrainConfig
    from sae_kit.train.group import build_group
    from sae_kit.train.loop import train_step
    from sae_kit.train.stats import StepStats

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        configs = [TrainConfig(loss=args.loss, sparsity_coeff=lam, device="cpu",
                               dict_ratio=args.dict_ratio, batch_size=args.batch_size,
                               grad_accum=args.grad_accum, seed=0,
                               n_samples=args.steps * args.batch_size * args.grad_accum,
                               output_dir=str(Path(tmp) / f"lambda{lam:g}"))
                   for lam in LAMBDAS]
        runs = build_group(configs)
        if variant == "no-clear":
            SharedClean.clear = lambda self: None  # type: ignore[method-assign]
        at_step: list[int] = []  # RSS as each optimizer step starts: what is held through it
        for run in runs:
            step = run.optimizer.step
            run.optimizer.step = (lambda *a, step=step: at_step.append(_kib("VmRSS"))
                                  or step(*a))
        gc.collect()
        base = _kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
        for _ in range(args.steps):
            train_step(runs, [StepStats() for _ in runs])
        peak = _kib("VmHWM")
        ids = next(runs[0].data)
        vocab = runs[0].splice.unembed.weight.shape[0]
        d_model = runs[0].splice.unembed.weight.shape[1]
    return {"peak_above_base_mb": (peak - base) / 1024, "peak_rss_mb": peak / 1024,
            "held_at_step_mb": (max(at_step[len(runs):]) - base) / 1024,  # after step 1's Adam
            "tokens": ids.numel(), "vocab": vocab, "d_model": d_model}


def _tree_at(rev: str, into: Path) -> Path:
    """sae_kit/ as it was at ``rev`` (git archive), to import in a child process."""
    archive = into / "before.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "sae_kit"],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def _child(args: argparse.Namespace, variant: str, tree: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--loss", args.loss,
           "--steps", str(args.steps), "--dict-ratio", str(args.dict_ratio),
           "--batch-size", str(args.batch_size), "--grad-accum", str(args.grad_accum)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "SAE_KIT_MALLOC": "system", "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="178f8eb",
                        help="The sae-kit commit to compare with (178f8eb: the loop cleared "
                             "the shared cache itself).")
    parser.add_argument("--loss", default="e2e")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dict-ratio", type=float, default=8.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        before_tree = _tree_at(args.before, Path(tmp))
        got = {"before": _child(args, "before", before_tree),
               "after": _child(args, "after", ROOT),
               "no-clear": _child(args, "no-clear", ROOT)}
    one = got["after"]
    kl_cache_mb = one["tokens"] * one["vocab"] * 2 * 4 / 2**20  # (log p, p) in fp32
    print(f"{args.loss}, {len(LAMBDAS)} members, {args.steps} steps x {args.grad_accum} "
          f"micro-batches of {one['tokens']} tokens, vocab {one['vocab']}, d_model "
          f"{one['d_model']}, dict_ratio {args.dict_ratio:g}, cpu, 1 thread; the clean KL "
          f"distribution of a batch is {kl_cache_mb:.0f} MB")
    base = got["before"]["peak_above_base_mb"]
    for name, row in got.items():
        print(f"{name:9s} peak above the built group {row['peak_above_base_mb']:7.1f} MB "
              f"(process peak {row['peak_rss_mb']:.0f} MB): {row['peak_above_base_mb'] / base:.3f}"
              f"x before ({args.before}); held at an optimizer step "
              f"{row['held_at_step_mb']:.1f} MB")


if __name__ == "__main__":
    main()
