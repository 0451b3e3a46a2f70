"""Train and evaluate a sweep's groups; finished points are skipped, interrupted ones resumed.

A point is *evaluated* (its eval.json exists: nothing to do), *trained* (every SAE it names is
saved: evaluate it), *started* (it has checkpoints: resume it) or *new*. A group's started
points resume together from the newest step they all saved; its new points train together.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sae_kit.store.jsonio import read_json
from sae_kit.store.run_dir import RunDir
from sae_kit.sweep.spec import Point, Sweep
from sae_kit.train import checkpoint

Say = Callable[[str], None]


def point_state(point: Point) -> str:
    layout = RunDir(point.config.output_dir or "")
    if layout.eval.is_file():
        return "evaluated"
    if layout.config.is_file():
        names = read_json(layout.config).get("hook_points") or []
        if names and all((layout.sae(n) / "sae.safetensors").is_file() for n in names):
            return "trained"
    if checkpoint.list_checkpoints(layout.checkpoints):
        return "started"
    return "new"


def run_group(sweep: Sweep, points: list[Point], say: Say, on_step: Any = None) -> None:
    """Train what is left of one group, then evaluate its points (rank 0 only)."""
    from pathlib import Path

    from sae_kit.train.group import build_group
    from sae_kit.train.loop import fit
    from sae_kit.train.resume import resume_runs

    states = {p.name: point_state(p) for p in points}
    started = [p for p in points if states[p.name] == "started"]
    new = [p for p in points if states[p.name] == "new"]
    if started:
        say(f"resuming {', '.join(p.name for p in started)}")
        runs, start = resume_runs([Path(p.config.output_dir or "") for p in started])
        fit(runs, on_step, start=start, group_dir=sweep.out)
    if new:
        say(f"training {', '.join(p.name for p in new)} in one pass")
        fit(build_group([p.config for p in new]), on_step, group_dir=sweep.out)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 evaluates
    for point in points:
        if point_state(point) != "evaluated":
            evaluate_point(sweep, point, say)


def evaluate_point(sweep: Sweep, point: Point, say: Say) -> dict[str, Any]:
    from sae_kit.eval.evaluation import evaluate_run

    say(f"evaluating {point.name}")
    device = "cpu" if point.config.device == "cpu" else "auto"
    return evaluate_run(point.config.output_dir or "", sweep.eval_tokens, sweep.eval_batch_size,
                        device)


def results(sweep: Sweep) -> list[dict[str, Any]]:
    """Every point's eval.json, in sweep order (all points must be evaluated)."""
    return [read_json(RunDir(p.config.output_dir or "").eval) for p in sweep.points]
