"""Time and peak memory of `sae-kit features` at two token counts: memory must not grow.

    python benchmarks/bench_features.py runs/default                  # a `sae-kit train` run
    python benchmarks/bench_features.py runs/default --tokens 10000 50000

Each count runs `sae-kit features RUN --dataset pydoc --split train --tokens N` (the built-in
model's held-out split has only ~5k tokens, so the train split supplies enough text) in a fresh
process, timed by wall clock; its peak resident memory is the kernel's (ru_maxrss of that child,
via os.wait4). Prints each count's figures and the ratios against the smallest count, the
baseline measured in the same run, plus the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(run_dir: str, tokens: int, out: Path, command_name: str = "features",
            *extra: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `sae-kit features` (or ``command_name``)
    process."""
    command = [sys.executable, "-m", "sae_kit", command_name, run_dir, "--dataset", "pydoc",
               "--split", "train", "--tokens", str(tokens), "--out", str(out), "--device", "cpu",
               *extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.exit(f"sae-kit {command_name} failed: {child.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tokens", type=int, nargs="+", default=[10_000, 50_000])
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tokens:
            seconds, rss = measure(args.run_dir, n, Path(tmp) / str(n))
            rows.append((n, seconds, rss))
            print(f"tokens {n:>8,}: {seconds:6.1f} s, peak RSS {rss:7.1f} MiB", flush=True)
    print(f"load average after: {os.getloadavg()}")
    base_n, base_s, base_rss = rows[0]
    for n, seconds, rss in rows[1:]:
        print(f"{n:,} vs {base_n:,} tokens ({n / base_n:.1f}x): time {seconds / base_s:.2f}x, "
              f"peak RSS {rss / base_rss:.3f}x")


if __name__ == "__main__":
    main()
