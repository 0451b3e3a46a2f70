"""Train and evaluate a sweep's groups; finished points are skipped, interrupted ones resumed.

A point is *evaluated* (its eval.json exists: nothing to do), *trained* (every SAE it names is
saved: evaluate it), *failed* (it stopped on a non-finite step, see sae_kit.train.nonfinite:
reported, never retrained until its directory is deleted), *started* (it has checkpoints:
resume it) or *new*. A group's started points resume together from the newest step they all
saved; its new points train together; a point that stops leaves the others of its group going.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.progress import Progress, ProgressLines
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import RunDir
from sae_kit.store.sae_dir import saved_every_sae
from sae_kit.sweep.spec import Point, Sweep
from sae_kit.train import checkpoint, distributed
from sae_kit.train.nonfinite import MembersStopped, read_failure, retry_hint

Say = Callable[[str], None]


def point_state(point: Point) -> str:
    layout = RunDir(point.config.output_dir or "")
    if layout.eval.is_file():
        return "evaluated"
    if saved_every_sae(layout):
        return "trained"
    if layout.failed.is_file():
        return "failed"
    if checkpoint.list_checkpoints(layout.checkpoints):
        return "started"
    return "new"


def run_group(sweep: Sweep, points: list[Point], say: Say,
              progress: Progress | None = None) -> None:
    """Train what is left of one group, then evaluate its points (rank 0 only). ``progress``
    (sae_kit.progress; default: log lines) hears of the steps of ``resuming`` and ``training``,
    then of the batches of ``evaluating NAME``."""
    from pathlib import Path

    from sae_kit.train.group import build_group
    from sae_kit.train.loop import fit

    progress = progress or ProgressLines()

    def on_step(what: str) -> Any:
        return lambda step, total, _row: progress(f"{what} (steps)", step, total)

    states = {p.name: point_state(p) for p in points}
    started = [p for p in points if states[p.name] == "started"]
    new = [p for p in points if states[p.name] == "new"]
    for point in points:
        if states[point.name] == "failed":
            say(f"{point.name} stopped earlier on a non-finite step; skipping it")
    try:
        if started:
            say(f"resuming {', '.join(p.name for p in started)}")
            _resume_together([Path(p.config.output_dir or "") for p in started], say,
                             on_step("resuming"), sweep.out)
    except MembersStopped:
        pass  # each stopped point's failed.json says why; the report lists it
    try:
        if new:
            say(f"training {', '.join(p.name for p in new)} in one pass")
            fit(build_group([p.config for p in new]), on_step("training"), group_dir=sweep.out)
    except MembersStopped:
        pass
    if not distributed.from_env().is_main:
        return  # under torchrun, rank 0 evaluates
    for point in points:
        state = point_state(point)
        changed = eval_changes(sweep, point) if state == "evaluated" else None
        if changed:
            say(f"{point.name} was evaluated with {changed}; evaluating it again")
        if state == "trained" or changed:
            evaluate_point(sweep, point, say, progress)


def _resume_together(dirs: list[Any], say: Say, on_step: Any, out: Any) -> None:
    """Resume started points in one pass from their newest common step; points an older
    sae-kit left without one resume one after another (same weights), never stuck."""
    from sae_kit.train.group import NoCommonStep
    from sae_kit.train.loop import fit
    from sae_kit.train.resume import resume, resume_runs

    try:
        runs, start = resume_runs(dirs)
    except NoCommonStep:
        say(f"{', '.join(d.name for d in dirs)} hold no checkpoint of a common step; "
            "resuming them one after another")
        for run_dir in dirs:
            run, lone_start = resume(run_dir)
            fit([run], on_step, start=lone_start)
        return
    fit(runs, on_step, start=start, group_dir=out)


def evaluate_point(sweep: Sweep, point: Point, say: Say,
                   progress: Progress | None = None) -> dict[str, Any]:
    from sae_kit.eval.evaluation import evaluate_run

    say(f"evaluating {point.name}")
    device = "cpu" if point.config.device == "cpu" else "auto"
    progress = progress or ProgressLines()

    def on_batch(done: int, total: int) -> None:
        progress(f"evaluating {point.name} (batches)", done, total)

    result = evaluate_run(point.config.output_dir or "", sweep.eval_tokens,
                          sweep.eval_batch_size, device, on_batch,
                          alive_tokens=sweep.eval_alive_tokens)
    write_json_atomic(RunDir(point.config.output_dir or "").sweep_eval, eval_settings(sweep))
    return result


def eval_settings(sweep: Sweep) -> dict[str, Any]:
    """The sweep's settings that change an evaluation's figures (eval_batch_size changes only
    memory, as kl_cache_mb does for training)."""
    return {"eval_tokens": sweep.eval_tokens, "eval_alive_tokens": sweep.eval_alive_tokens}


def eval_changes(sweep: Sweep, point: Point) -> str:
    """"eval_tokens 256 → 512" when the point was evaluated with other settings than the sweep
    asks for now; "" when not. A point evaluated before sae-kit kept sweep-eval.json is judged
    by the tokens its eval.json counted."""
    layout = RunDir(point.config.output_dir or "")
    now = eval_settings(sweep)
    try:
        if layout.sweep_eval.exists():
            old = read_json(layout.sweep_eval)
        else:
            old = _settings_in_eval_json(layout, sweep)
    except SaeKitError:  # damaged: evaluating again writes both files anew
        old = {}
    old = old if isinstance(old, dict) else {}
    return ", ".join(f"{key} {old.get(key)} → {value}" for key, value in now.items()
                     if old.get(key) != value)


def _settings_in_eval_json(layout: RunDir, sweep: Sweep) -> dict[str, Any]:
    from sae_kit.eval.settings import EVAL

    found = read_json(layout.eval)
    context = found.get("context") if isinstance(found, dict) else None
    if not isinstance(context, int) or context < 1:
        return {}
    asked = sweep.eval_tokens or EVAL.n_tokens
    same = found.get("n_tokens") == -(-asked // context) * context
    return {**eval_settings(sweep), "eval_tokens": sweep.eval_tokens if same
            else f"{found.get('n_tokens')} tokens"}


def results(sweep: Sweep) -> list[dict[str, Any]]:
    """Every point's eval.json, in sweep order; a point that stopped on a non-finite step gives
    its run directory, loss, lambda and ``failed`` (its failed.json) instead."""
    found = []
    for point in sweep.points:
        run_dir = point.config.output_dir or ""
        failure = read_failure(run_dir)
        if failure is not None and point_state(point) == "failed":
            found.append({"run_dir": run_dir, "loss": point.config.loss,
                          "sparsity_coeff": point.config.sparsity_coeff,
                          "architecture": point.config.architecture, "failed": failure})
        else:
            found.append(read_json(RunDir(run_dir).eval))
    return found


def failed_points(points: list[Point]) -> list[str]:
    """One error line per point that stopped on a non-finite step: why, and how to retry."""
    lines = []
    for point in points:
        if point_state(point) == "failed":
            run_dir = point.config.output_dir or ""
            failure = read_failure(run_dir) or {}
            lines.append(f"sweep point {point.name!r} stopped: {failure.get('error', '?')}; "
                         f"{retry_hint(run_dir)}")
    return lines
