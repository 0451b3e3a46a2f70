"""Time and peak memory of `sae-kit importance` against `sae-kit features` at the same token
counts: memory must not grow with tokens, and the ratio says what importance costs.

    OMP_NUM_THREADS=1 python benchmarks/bench_importance.py runs/default --tokens 10000 50000
    ... --exact-top 4 --exact-random 4 --commands importance    # fewer reruns, no report

Each (command, count) runs `sae-kit COMMAND RUN --dataset pydoc --split train --tokens N` in a
fresh process (as benchmarks/bench_features.py, whose measurement this reuses): wall clock, and
the child's peak resident memory. Also `sae-kit features --importance` (the report with both,
sharing one pass). Prints every figure, the ratios against `sae-kit features` at the same count
(the baseline measured in the same run) and against the smallest count, and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import measure  # noqa: E402

COMMANDS = {"features": ("features",), "importance": ("importance",),
            "features --importance": ("features", "--importance")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--tokens", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--exact-top", type=int, default=32)
    parser.add_argument("--exact-random", type=int, default=32)
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS),
                        help="Which to measure (`features` is always measured: the baseline).")
    args = parser.parse_args()
    commands = {label: COMMANDS[label] for label in COMMANDS
                if label == "features" or label in args.commands}
    exact = ("--exact-top", str(args.exact_top), "--exact-random", str(args.exact_random))
    print(f"load average before: {os.getloadavg()}")
    figures: dict[tuple[str, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tokens:
            for label, (command, *flags) in commands.items():
                extra = (*flags, *exact) if label != "features" else ()
                out = Path(tmp) / f"{label.replace(' ', '_')}-{n}"
                figures[label, n] = measure(args.run_dir, n, out, command, *extra)
                seconds, rss = figures[label, n]
                print(f"{label:>22} tokens {n:>8,}: {seconds:7.1f} s, peak RSS {rss:7.1f} MiB",
                      flush=True)
    print(f"load average after: {os.getloadavg()}")
    for n in args.tokens:
        base_s, base_rss = figures["features", n]
        for label in list(commands)[1:]:
            seconds, rss = figures[label, n]
            print(f"{label} vs features at {n:,} tokens: time {seconds / base_s:.2f}x, "
                  f"peak RSS {rss / base_rss:.2f}x")
    first = args.tokens[0]
    for label in commands:
        for n in args.tokens[1:]:
            (s0, r0), (s1, r1) = figures[label, first], figures[label, n]
            print(f"{label}: {n:,} vs {first:,} tokens ({n / first:.1f}x): time {s1 / s0:.2f}x, "
                  f"peak RSS {r1 / r0:.3f}x")


if __name__ == "__main__":
    main()
