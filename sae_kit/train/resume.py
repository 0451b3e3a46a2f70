"""Continue an interrupted run exactly where its latest checkpoint left it.

    sae-kit train --resume runs/gpt2-e2e-20261125-120000

The settings come from the run directory's ``config.json``; only the options in
``RESUME_OVERRIDES`` (where and how often to save, which device) may be given again, since
every other setting changes what is trained. The data stream is rebuilt from the seed and the
windows the checkpoint consumed are skipped; ``metrics.jsonl`` is cut back to its length at the
checkpoint, so no step is logged twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError, warn_stderr
from sae_kit.record.config import TrainConfig
from sae_kit.record.run_record import StartRecord
from sae_kit.store.run_dir import RunDir
from sae_kit.store.run_lock import lock_run
from sae_kit.train import checkpoint, distributed
from sae_kit.train.build import build_run, make_data
from sae_kit.train.checkpoint import TrainState
from sae_kit.train.group import build_group, common_checkpoints, member_dirs
from sae_kit.train.nonfinite import read_failure
from sae_kit.train.run import Run, apply
from sae_kit.train.stats import MetricsLog

RESUME_OVERRIDES = ("device", "save_every", "keep_checkpoints")
"""Settings a resumed run may change: none of them alters the SAE weights it ends with."""


def resume_config(run_dir: str | Path, **overrides: Any) -> TrainConfig:
    """The run's saved TrainConfig, with the allowed ``overrides`` (None means keep)."""
    layout = RunDir(run_dir)
    unknown = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if unknown:
        raise SaeKitError(f"a resumed run cannot change {', '.join(unknown)}")
    config = layout.read().config
    given = {name: value for name, value in overrides.items() if value is not None}
    # The directory may have moved since; replace() validates the overrides.
    return dataclasses.replace(config, output_dir=str(layout.path), **given)


def resume(
    run_dir: str | Path, warn: Callable[[str], None] = warn_stderr, **overrides: Any
) -> tuple[Run, TrainState]:
    """Rebuild the run in ``run_dir`` at its latest readable checkpoint; pass both to ``fit``.

    A corrupt newest checkpoint is renamed to ``*.corrupt`` (with a warning) and the previous
    kept one is used; when none is readable this raises SaeKitError.
    """
    config = resume_config(run_dir, **overrides)
    layout = RunDir(config.output_dir or run_dir)
    _check_world_size(layout)
    # Held from before the first read to the end of training: a second resume of this run
    # would write every checkpoint and metrics row twice.
    lock = lock_run(layout.path) if distributed.from_env().is_main else None
    if not checkpoint.list_checkpoints(layout.checkpoints):
        checkpoint.load_latest(layout.checkpoints)  # the one-line "no checkpoint" error
    run = build_run(config)
    run.lock = lock
    _keep_start_record(run, layout.read().resolved.init_from, warn)
    latest, skipped = checkpoint.load_latest(layout.checkpoints,
                                             accept=lambda found: _put_into(run, found))
    # The data resumes after the windows that checkpoint had consumed.
    run.data = make_data(run.config, run.loaded, run.resolved.context,
                         latest.counters.windows, run.dist)
    run.dist.barrier()  # every rank has read the checkpoints before rank 0 renames any
    if run.dist.is_main:
        for path, reason in skipped:
            moved = checkpoint.quarantine(path)
            warn(f"{reason}; renamed it to {moved.name} and resumed from {latest.path.name}")
        _rewind_metrics(layout, latest, warn)
    return run, latest.counters


def _keep_start_record(run: Run, saved: StartRecord | None,
                       warn: Callable[[str], None]) -> None:
    """A fine-tune keeps the record of the source it started from: its weights now come from
    the checkpoint, so a source changed since then changes nothing but is worth a warning."""
    now = run.resolved.init_from
    if saved is None or now is None:
        return
    if saved.sha256 != now.sha256 and run.dist.is_main:
        warn(f"--init-from {saved.source!r} has changed since this run started; the run "
             "continues from its checkpoint and config.json keeps the source as it was")
    run.resolved = dataclasses.replace(run.resolved, init_from=saved)


def _rewind_metrics(layout: RunDir, saved: checkpoint.Checkpoint,
                    warn: Callable[[str], None]) -> None:
    """Cut metrics.jsonl back to the checkpoint's step (a torn last row included)."""
    problem = MetricsLog(layout.metrics).rewind(saved.counters.metrics_offset)
    if problem:
        warn(problem)


def _put_into(run: Run, found: checkpoint.Checkpoint) -> None:
    """Check a checkpoint agrees with the run's config, then apply it; SaeKitError if not.

    The counters and schedule follow from the config and the step, so a checkpoint whose
    numbers disagree was damaged or edited, even when its checksums were recomputed.
    """
    c = found.counters
    windows = c.step * run.config.samples_per_step * run.dist.world_size
    scheduler = found.tree.get("scheduler")
    expected = {
        "step": (c.step, min(c.step, run.total_steps)),
        "windows": (c.windows, windows),
        "tokens": (c.tokens, windows * run.resolved.context),
        "scheduler step": (scheduler.get("last_epoch") if isinstance(scheduler, dict) else None,
                           c.step),
        "base learning rates": (scheduler.get("base_lrs") if isinstance(scheduler, dict)
                                else None, [run.config.lr] * len(run.optimizer.param_groups)),
    }
    wrong = [f"{name} {got!r} (want {want!r})" for name, (got, want) in expected.items()
             if got != want]
    if wrong:
        raise SaeKitError(f"checkpoint {str(found.path)!r} is corrupt: it disagrees with "
                          f"config.json: {', '.join(wrong)}")
    apply(run, found)


def _check_world_size(layout: RunDir) -> None:
    saved_world = layout.read().resolved.world_size
    world = distributed.from_env().world_size
    if world != saved_world:
        raise SaeKitError(
            f"{str(layout)!r} was trained by {saved_world} process(es); resume it with the "
            f"same number (this is {world}), since it sets the batch and schedule"
        )


def resume_group(group_dir: str | Path, warn: Callable[[str], None] = warn_stderr,
                 **overrides: Any) -> tuple[list[Run], TrainState]:
    """Rebuild a group trained in one pass (``sae_kit.train.group``) from its group.json.

    Members that stopped on a non-finite step (their failed.json) stay as they are; the others
    resume, and ``warn`` says so in one line.
    """
    dirs = member_dirs(group_dir)
    failed = {d: read_failure(d) for d in dirs}
    left = [d for d in dirs if failed[d] is None]
    if not left:
        raise SaeKitError(f"every run in {str(group_dir)!r} stopped on a non-finite loss or "
                          "gradient (see failed.json in each); train the group again with a "
                          "lower --lr or --lambda")
    if len(left) < len(dirs) and distributed.from_env().is_main:
        gone = [f"{d.name} (step {failed[d]['step']}: non-finite {failed[d]['reason']})"
                for d in dirs if failed[d] is not None]
        warn(f"resuming {len(left)} of {len(dirs)} runs; {', '.join(gone)} stopped earlier "
             "and stay as they are")
    return resume_runs(left, **overrides)


def resume_runs(dirs: list[Path], **overrides: Any) -> tuple[list[Run], TrainState]:
    """Rebuild runs that share one pass at the newest step all of them saved; pass both to
    ``fit``."""
    configs = [resume_config(d, **overrides) for d in dirs]
    for d in dirs:
        _check_world_size(RunDir(d))
    main = distributed.from_env().is_main
    locks = [lock_run(d) if main else None for d in dirs]  # one process per run, as resume()
    try:
        latest = common_checkpoints(dirs)
        runs = build_group(configs, skip_windows=latest[0].counters.windows)
    except BaseException:  # no common step, a bad model: free the runs for what comes next
        for lock in locks:
            if lock is not None:
                lock.release()
        raise
    for run, lock in zip(runs, locks, strict=True):
        run.lock = lock
    for run, saved in zip(runs, latest, strict=True):
        _put_into(run, saved)  # the same checks against config.json as a lone resume
    runs[0].dist.barrier()
    if runs[0].dist.is_main:
        for d, saved in zip(dirs, latest, strict=True):
            _rewind_metrics(RunDir(d), saved, warn_stderr)
    return runs, latest[0].counters
