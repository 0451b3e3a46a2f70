"""Several SAEs in one shared pass against the same SAEs trained one after another.

    python benchmarks/bench_shared_pass.py --loss local          # built-in model, 5 lambdas
    python benchmarks/bench_shared_pass.py --loss e2e --steps 8

Each measurement runs in a fresh subprocess (so peak RSS is its own), with the allocator set up
as the ``sae-kit`` command sets it: build the run(s) (load the model, tokenize the data, make the
SAEs) and train --steps optimizer steps (default: the built-in model's whole default run) with
its defaults, on --threads threads. "separate" is one process per lambda, as five
`sae-kit train` commands would be (interpreter start-up excluded); "shared" is one process
training all lambdas in one pass (`sae-kit train --lambda a,b,c,d,e`); "shared-1" is one lambda
through the same path, for the memory baseline. Step times are medians over the steps after the
first; CPU time (user + system, build and training) is reported too, since a core shared with
other jobs inflates it less than wall time. The clean pass (what sharing saves per extra SAE) is
timed alone in the "separate" runs. Ratios are printed against the baseline measured in the same
invocation, with the shared run measured between the separate ones.

It also prints the most that sharing can give by arithmetic (Amdahl's law): a lone step costs
T, of which the shared part (the clean pass, timed alone) is C; n SAEs in one pass cost at
least C + n (T - C), so the per-step speed-up is at most n T / (C + n (T - C)).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAMBDAS = [0.5, 1.0, 2.0, 4.0, 8.0]


def _configs(args: argparse.Namespace, lambdas: list[float], out: Path) -> list:
    from sae_kit.record.config import TrainConfig

    return [TrainConfig(loss=args.loss, sparsity_coeff=lam, device=args.device,
                        dict_ratio=args.dict_ratio, n_samples=args.steps * 8, log_every=1000,
                        output_dir=str(out / f"lambda{lam:g}"), seed=0)
            for lam in lambdas]


def measure(args: argparse.Namespace, lambdas: list[float]) -> dict:
    """Build and train ``lambdas`` in one pass in this process; times and peak RSS."""
    import torch

    from sae_kit.train.group import build_group
    from sae_kit.train.loop import fit

    torch.set_num_threads(args.threads)
    steps: list[float] = []
    cpu_steps: list[float] = []
    last = [0.0, 0.0]

    def on_step(step: int, total: int, row: dict | None) -> None:
        now, cpu_now = time.perf_counter(), _cpu_s()
        steps.append(now - last[0])
        cpu_steps.append(cpu_now - last[1])
        last[:] = [now, cpu_now]

    with tempfile.TemporaryDirectory() as tmp:
        cpu_started = _cpu_s()
        started = time.perf_counter()
        runs = build_group(_configs(args, lambdas, Path(tmp)))
        built = last[0] = time.perf_counter()
        last[1] = _cpu_s()
        fit(runs, on_step, group_dir=Path(tmp))
        ended = time.perf_counter()
        cpu = _cpu_s() - cpu_started
        clean = _clean_pass(runs[0], args.loss) if len(lambdas) == 1 else None
    return {"wall_s": ended - started, "cpu_s": cpu, "build_s": built - started,
            "step_s": statistics.median(steps[1:]), "clean_s": clean,
            "step_cpu_s": statistics.median(cpu_steps[1:]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _clean_pass(run, loss: str) -> float:
    """Median time of what a shared pass computes once: the clean pass the loss asks for and,
    for the KL losses, the clean output distribution (its logits, log-softmax and softmax)."""
    import torch

    ids = next(run.data).to(run.device)
    final = loss != "local"
    times = []
    for _ in range(3):
        started = time.perf_counter()
        clean = run.splice.clean(ids, capture=run.splice.sae_sites, final_hidden=final)
        if final:
            with torch.no_grad():
                torch.log_softmax(run.splice.unembed(clean.final_hidden), dim=-1).exp()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _child(args: argparse.Namespace, lambdas: list[float]) -> dict:
    cmd = [sys.executable, __file__, "--child", ",".join(map(str, lambdas)), "--loss", args.loss,
           "--steps", str(args.steps), "--dict-ratio", str(args.dict_ratio),
           "--device", args.device, "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", default="local")
    parser.add_argument("--steps", type=int, default=100,
                        help="Optimizer steps per run (100: the built-in model's default run).")
    parser.add_argument("--dict-ratio", type=float, default=60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from sae_kit.train import malloc

        malloc.configure()  # as the sae-kit command does, before torch allocates
        print(json.dumps(measure(args, [float(x) for x in args.child.split(",")])))
        return
    # Shared measured between the separate runs, so a change in machine load hits both sides.
    separate = [_child(args, [lam]) for lam in LAMBDAS[:2]]
    shared = _child(args, LAMBDAS)
    separate += [_child(args, [lam]) for lam in LAMBDAS[2:]]
    alone = sum(r["wall_s"] for r in separate)
    alone_cpu = sum(r["cpu_s"] for r in separate)
    single_step = statistics.median(r["step_s"] for r in separate)
    clean = statistics.median(r["clean_s"] for r in separate)
    n = len(LAMBDAS)
    print(f"{args.loss}, {n} lambdas, {args.steps} steps of 8 x 256 tokens, dict_ratio "
          f"{args.dict_ratio:g}, {args.device}, {args.threads} thread(s)")
    print(f"separate runs: {alone:.1f} s in all (build {separate[0]['build_s']:.1f} s each, "
          f"step {single_step:.3f} s, of which clean pass {clean:.3f} s)")
    print(f"shared pass:   {shared['wall_s']:.1f} s (build {shared['build_s']:.1f} s, "
          f"step {shared['step_s']:.3f} s)")
    print(f"speed-up: {alone / shared['wall_s']:.2f}x whole runs (wall), "
          f"{alone_cpu / shared['cpu_s']:.2f}x (CPU time: {alone_cpu:.1f} s against "
          f"{shared['cpu_s']:.1f} s), {n * single_step / shared['step_s']:.2f}x per step")
    single_cpu = statistics.median(r["step_cpu_s"] for r in separate)
    print(f"per step in CPU time: {single_cpu:.3f} s alone, {shared['step_cpu_s']:.3f} s for "
          f"{n} shared: {n * single_cpu / shared['step_cpu_s']:.2f}x")
    own = single_step - clean  # what a member costs that sharing cannot remove
    marginal = (shared["step_s"] - single_step) / (n - 1)
    print(f"each extra SAE adds {marginal:.3f} s per step; its own (unshared) part of a lone "
          f"step is {own:.3f} s: ratio {marginal / own:.2f} (<= 1: no slower than alone)")
    ceiling = n * single_step / (clean + n * own)
    print(f"ceiling by arithmetic: the shared part is {clean / single_step:.1%} of a lone step, "
          f"so {n} SAEs in one pass can be at most {ceiling:.2f}x faster per step")
    one = _child(args, LAMBDAS[:1])
    print(f"peak RSS: 1 SAE {one['peak_rss_mb']:.0f} MB, {n} shared SAEs "
          f"{shared['peak_rss_mb']:.0f} MB, {n} separate runs {separate[0]['peak_rss_mb']:.0f} MB "
          "each")


if __name__ == "__main__":
    main()
