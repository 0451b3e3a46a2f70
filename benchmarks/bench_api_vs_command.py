"""The Python API against the `sae-kit` command: the same training run, in fresh processes.

    python benchmarks/bench_api_vs_command.py                   # 3 rounds, 200 samples each
    OMP_NUM_THREADS=1 python benchmarks/bench_api_vs_command.py --rounds 5 --samples 400

Each round runs, in turn (interleaved, so a change of load hits all of them alike):
`sae-kit train --n-samples N` (the command: glibc set to reuse freed buffers before torch loads),
`sae_kit.train_saes(TrainConfig(n_samples=N))` from a Python script (the API: the same setting, made
when train() is called), and the script again with `SAE_KIT_MALLOC=system` (glibc's defaults:
what the API did before it applied the setting). Times are the child's wall clock and CPU
(user + system, from os.wait4); medians and the ratios to the command are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

API = ("import sys\nfrom sae_kit import TrainConfig, train_saes\n"
       "train_saes(TrainConfig(n_samples=int(sys.argv[1]), output_dir=sys.argv[2],"
       " device='cpu'))\n")


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status:
        raise SystemExit(f"{command[:4]} failed: {child.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items()
            if k not in ("SAE_KIT_MALLOC", "THP_MEM_ALLOC_ENABLE")}
    kinds = {
        "command": ([sys.executable, "-m", "sae_kit", "train", "--n-samples", str(args.samples),
                     "--device", "cpu", "--out"], base),
        "api": ([sys.executable, "-c", API, str(args.samples)], base),
        "api, glibc defaults": ([sys.executable, "-c", API, str(args.samples)],
                                {**base, "SAE_KIT_MALLOC": "system"}),
    }
    print(f"load average before: {os.getloadavg()}")
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, (command, env) in kinds.items():
                out = str(Path(tmp) / f"{name.replace(' ', '_').replace(',', '')}-{r}")
                times[name].append(run([*command, out], env))
                print(f"round {r + 1} {name:>20}: {times[name][-1][0]:6.1f} s wall, "
                      f"{times[name][-1][1]:6.1f} s CPU", flush=True)
    print(f"load average after: {os.getloadavg()}")
    ref_wall = statistics.median(t[0] for t in times["command"])
    ref_cpu = statistics.median(t[1] for t in times["command"])
    for name, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        print(f"{name:>20}: median {wall:6.1f} s wall ({wall / ref_wall:.3f}x the command), "
              f"{cpu:6.1f} s CPU ({cpu / ref_cpu:.3f}x)")


if __name__ == "__main__":
    main()
