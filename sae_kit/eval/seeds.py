"""Seed noise: runs that differ only in their seed, their mean ± std, and 2σ comparisons.

A 2026 audit of SAE benchmarks (Chanin, arXiv 2605.18229) found most metrics noisier across
seeds than assumed; so the sweep table, the Pareto plot and ``sae-kit bench`` group
*replicates* (runs whose settings are equal apart from the seed), report mean ± sample standard
deviation over them, and mark which differences cannot be told apart from seed noise.

Two means a and b (n_a, n_b seeds, sample standard deviations s_a, s_b) are *distinguishable at
2σ* when ``|a - b| > 2 sqrt(s_a²/n_a + s_b²/n_b)``, σ being the standard error of their
difference. With a single seed there is no noise estimate, and nothing is marked.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, NamedTuple

from sae_kit.errors import SaeKitError
from sae_kit.store.run_dir import RunDir

NOT_REPLICATE_FIELDS = ("seed", "output_dir")
"""What replicates may differ in: the seed, and where each was written."""


class Stat(NamedTuple):
    """Mean, sample standard deviation and number of seeds of one metric at one point."""

    mean: float
    std: float
    n: int


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def stat(values: list[float]) -> Stat:
    return Stat(*mean_std(values), len(values))


def standard_error(s: Stat) -> float:
    """The standard error of the mean: std / sqrt(n)."""
    return s.std / math.sqrt(s.n)


def distinguishable(a: Stat, b: Stat) -> bool | None:
    """Whether two means differ by more than 2σ of their difference; None with one seed."""
    if a.n < 2 or b.n < 2:
        return None
    return abs(a.mean - b.mean) > 2 * math.hypot(standard_error(a), standard_error(b))


def ties_with_best(stats: list[Stat | None], higher_is_better: bool) -> list[str]:
    """Per entry: "best", "tie" (not distinguishable from the best at 2σ) or ""."""
    present = [(i, s) for i, s in enumerate(stats) if s is not None and math.isfinite(s.mean)]
    marks = [""] * len(stats)
    if len(present) < 2:
        return marks
    sign = -1.0 if higher_is_better else 1.0
    best_i, best = min(present, key=lambda item: sign * item[1].mean)
    marks[best_i] = "best"
    for i, s in present:
        if i != best_i and distinguishable(s, best) is False:
            marks[i] = "tie"
    return marks


def replicate_key(result: dict[str, Any]) -> str:
    """What a result (an ``eval.json``) is apart from its seed: its run's settings without
    seed and output directory; a result without a readable run is a point of its own."""
    run = RunDir(result.get("run_dir") or ".")
    if result.get("run_dir") and run.is_run():
        try:
            settings = dataclasses.asdict(run.read().config)
        except SaeKitError:  # an unreadable record: the run is a point of its own
            return f"run:{result['run_dir']}"
        return repr({k: v for k, v in sorted(settings.items()) if k not in NOT_REPLICATE_FIELDS})
    return f"run:{result.get('run_dir') or id(result)}"


def group_replicates(results: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Results grouped by ``replicate_key``, in the order each point first appears."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(replicate_key(result), []).append(result)
    return list(groups.values())


_SEED_PART = re.compile(r"(^|[-_])seed\d+(?=[-_]|$)")


def replicate_name(run_dirs: list[str]) -> str:
    """A name for a point from its runs' directory names: "local-l1" for local-l1-seed0,
    local-l1-seed1, ...; the first name otherwise."""
    names = [Path(d).name for d in run_dirs]
    stripped = {_SEED_PART.sub("", n).strip("-_") for n in names}
    if len(stripped) == 1 and (only := stripped.pop()):
        return only
    return names[0] + ("" if len(names) == 1 else f" (+{len(names) - 1})")
