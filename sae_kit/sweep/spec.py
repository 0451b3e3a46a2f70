"""The sweep file: settings shared by every run, and a grid (or list) of what varies.

    out = "runs/e2e-vs-local"          # one run directory per point, named by what varies
    eval_tokens = 100000               # held-out tokens per evaluation (default: sae-kit eval's)
    eval_alive_tokens = 500000         # training tokens alive latents are counted on (same)
    seeds = [0, 1, 2]                  # every point once per seed (results: mean ± std)
    plot = "pareto.png"                # written into `out`, in the format its extension names

    [base]                             # TrainConfig fields (as in config.json) for every point
    dict_ratio = 16

    [grid]                             # every combination of these lists
    loss = ["local", "e2e"]
    lambda = [0.5, 1, 2, 4, 8]         # = sparsity_coeff; `layer = [1, 2]` sets hook_points
    arch = [{name = "relu"}, {name = "topk32", architecture = "topk",
            architecture_options = {k = 32}}]      # (one line in a real file)

    [[runs]]                           # and/or an explicit list of points (merged onto base)
    loss = "e2e+ds"
    lambda = 4

A grid key that is not a TrainConfig field takes tables, merged onto the point (``name`` names
the table in the run directory's name). Points that agree on everything but lambda and the
architecture settings form one group, trained in one shared pass.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.eval.pareto import plot_format
from sae_kit.eval.settings import EVAL
from sae_kit.record.config import SHARED_IN_ONE_PASS, TrainConfig
from sae_kit.sweep.names import MAX_POINTS, check_top_level, grid_size, point_dir, safe_part
from sae_kit.train.settings_file import config_from_settings, read_settings

TOP_KEYS = {"out", "eval_tokens", "eval_batch_size", "eval_alive_tokens", "plot", "seeds", "base",
            "grid", "runs"}
SHAPES = ("loss", "loss_options", "hook_points")
"""Besides SHARED_IN_ONE_PASS, what the members of one shared pass have in common."""


@dataclass
class Point:
    name: str
    config: TrainConfig


@dataclass
class Sweep:
    path: Path
    out: Path
    points: list[Point]
    eval_tokens: int | None = None
    eval_batch_size: int = 8
    plot: str = "pareto.png"
    eval_alive_tokens: int = EVAL.alive_tokens
    groups: list[list[Point]] = field(default_factory=list)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; every point's config is validated here."""
    path = Path(path)
    data = read_settings(path)
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise SaeKitError(f"{str(path)!r}: unknown key(s) {', '.join(unknown)}; a sweep file "
                          f"has {', '.join(sorted(TOP_KEYS))}")
    check_top_level(data, path)
    out = Path(data.get("out") or Path("runs") / path.stem)
    base = _table(data.get("base", {}), "base", path)
    found = with_seeds(_grid(data, path), data.get("seeds"), path)
    points = [_point(out, base, name, values, path) for name, values in found]
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise SaeKitError(f"{str(path)!r}: two points would share a run directory; give the "
                          "[[runs]] entries or grid tables a distinct `name`")
    if not points:
        raise SaeKitError(f"{str(path)!r} has no [grid] and no [[runs]]: nothing to train")
    sweep = Sweep(path, out, points, data.get("eval_tokens"), int(data.get("eval_batch_size", 8)),
                  str(data.get("plot", "pareto.png")),
                  int(data.get("eval_alive_tokens", EVAL.alive_tokens)))
    plot_format(sweep.plot)  # a misspelt extension fails now, not after the training
    sweep.groups = group_points(points)
    return sweep


def _table(value: Any, what: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SaeKitError(f"{str(path)!r}: {what} must be a table of settings")
    return dict(value)


def _grid(data: dict[str, Any], path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(name, settings) per point: the grid's combinations, then the [[runs]] entries."""
    grid = _table(data.get("grid", {}), "grid", path)
    found: list[tuple[str, dict[str, Any]]] = []
    if grid:
        grid_size(grid, path)  # checks each list, and the product, before expanding it
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            settings: dict[str, Any] = {}
            parts = []
            for key, value in zip(keys, combo, strict=True):
                part, extra = _grid_value(key, value, grid[key])
                parts.append(part)
                settings.update(extra)
            found.append(("-".join(parts), settings))
    for i, entry in enumerate(data.get("runs", [])):
        entry = _table(entry, f"runs[{i}]", path)
        name = entry.pop("name", "") or "-".join(_name_part(k, v) for k, v in entry.items())
        found.append((name, entry))
    return found


def with_seeds(found: list[tuple[str, dict[str, Any]]], seeds: list[Any] | None,
               path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``seeds = [0, 1, 2]``: every point (grid and [[runs]]) once per seed, named NAME-seedN."""
    if seeds is None:
        return found
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SaeKitError(f"{str(path)!r}: seeds = {seeds!r} must list one or more whole "
                          "numbers, e.g. seeds = [0, 1, 2] trains every point three times")
    if len(set(seeds)) != len(seeds):
        raise SaeKitError(f"{str(path)!r}: seeds = {seeds!r} repeats a seed")
    if len(found) * len(seeds) > MAX_POINTS:
        raise SaeKitError(f"{str(path)!r}: {len(found):,} points x {len(seeds)} seeds is more "
                          f"than the {MAX_POINTS:,} points a sweep may hold")
    both = [name for name, settings in found if "seed" in settings]
    if both:
        raise SaeKitError(f"{str(path)!r}: point {both[0]!r} sets seed and the file has seeds "
                          "= [...]; keep one of them")
    return [(f"{name}-seed{seed}", {**settings, "seed": seed})
            for name, settings in found for seed in seeds]


def _grid_value(key: str, value: Any, values: list[Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(value, dict):
        table = dict(value)
        name = table.pop("name", f"{key}{values.index(value)}")
        if key == "arch" and "architecture" not in table:
            table["architecture"] = name
        return name, table
    return _name_part(key, value), {key: value}


def _name_part(key: str, value: Any) -> str:
    """A value as part of a directory name: path separators become ``_`` (a value such as
    ``../x`` must never name a directory outside ``out``)."""
    if key in ("loss", "architecture", "model", "dataset"):
        return safe_part(str(value))
    short = {"sparsity_coeff": "lambda"}.get(key, key)
    return safe_part(f"{short}{value:g}" if isinstance(value, float) else f"{short}{value}")


def _point(out: Path, base: dict[str, Any], name: str, settings: dict[str, Any],
           path: Path) -> Point:
    merged = {**base, **settings, "output_dir": str(point_dir(out, name, path))}
    return Point(name, config_from_settings(merged, where=f"{str(path)!r}, point {name!r}"))


def group_points(points: list[Point]) -> list[list[Point]]:
    """Points that can share one pass, in the order they first appear."""
    groups: dict[str, list[Point]] = {}
    for point in points:
        c = dataclasses.asdict(point.config)
        key = repr([c[name] for name in (*SHARED_IN_ONE_PASS, *SHAPES)])
        groups.setdefault(key, []).append(point)
    return list(groups.values())
