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
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.store.jsonio import read_json
from sae_kit.store.run_dir import RunDir
from sae_kit.train import checkpoint, distributed
from sae_kit.train.build import build_run
from sae_kit.train.checkpoint import TrainState
from sae_kit.train.config import TrainConfig
from sae_kit.train.group import build_group, common_checkpoints, member_dirs
from sae_kit.train.run import Run, apply

RESUME_OVERRIDES = ("device", "save_every", "keep_checkpoints")
"""Settings a resumed run may change: none of them alters the SAE weights it ends with."""


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def resume_config(run_dir: str | Path, **overrides: Any) -> TrainConfig:
    """The run's saved TrainConfig, with the allowed ``overrides`` (None means keep)."""
    layout = RunDir(run_dir)
    if not layout.is_run():
        raise SaeKitError(
            f"{str(run_dir)!r} is not a sae-kit run directory (no config.json); pass the "
            "directory `sae-kit train` printed"
        )
    unknown = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if unknown:
        raise SaeKitError(f"a resumed run cannot change {', '.join(unknown)}")
    saved = read_json(layout.config)
    try:
        config = TrainConfig.from_dict(saved)
    except TypeError as exc:
        raise SaeKitError(f"{str(layout.config)!r} is not a training config ({exc})") from None
    given = {name: value for name, value in overrides.items() if value is not None}
    # The directory may have moved since; replace() validates the overrides.
    return dataclasses.replace(config, output_dir=str(layout.path), **given)


def resume(
    run_dir: str | Path, warn: Callable[[str], None] = _stderr, **overrides: Any
) -> tuple[Run, TrainState]:
    """Rebuild the run in ``run_dir`` at its latest readable checkpoint; pass both to ``fit``.

    A corrupt newest checkpoint is renamed to ``*.corrupt`` (with a warning) and the previous
    kept one is used; when none is readable this raises SaeKitError.
    """
    config = resume_config(run_dir, **overrides)
    layout = RunDir(config.output_dir or run_dir)
    _check_world_size(layout)
    latest, skipped = checkpoint.load_latest(layout.checkpoints)
    run = build_run(config, skip_windows=latest.counters.windows)
    apply(run, latest)
    run.dist.barrier()  # every rank has read the checkpoints before rank 0 renames any
    if run.dist.is_main:
        for path, reason in skipped:
            moved = checkpoint.quarantine(path)
            warn(f"{reason}; renamed it to {moved.name} and resumed from {latest.path.name}")
        _cut_metrics(layout.metrics, latest.counters.metrics_offset)
    return run, latest.counters


def _check_world_size(layout: RunDir) -> None:
    saved_world = int(read_json(layout.config).get("resolved", {}).get("world_size", 1))
    world = distributed.from_env().world_size
    if world != saved_world:
        raise SaeKitError(
            f"{str(layout)!r} was trained by {saved_world} process(es); resume it with the "
            f"same number (this is {world}), since it sets the batch and schedule"
        )


def resume_group(group_dir: str | Path, **overrides: Any) -> tuple[list[Run], TrainState]:
    """Rebuild a group trained in one pass (``sae_kit.train.group``) from its group.json."""
    return resume_runs(member_dirs(group_dir), **overrides)


def resume_runs(dirs: list[Path], **overrides: Any) -> tuple[list[Run], TrainState]:
    """Rebuild runs that share one pass at the newest step all of them saved; pass both to
    ``fit``."""
    configs = [resume_config(d, **overrides) for d in dirs]
    for d in dirs:
        _check_world_size(RunDir(d))
    latest = common_checkpoints(dirs)
    runs = build_group(configs, skip_windows=latest[0].counters.windows)
    for run, saved in zip(runs, latest, strict=True):
        apply(run, saved)
    runs[0].dist.barrier()
    if runs[0].dist.is_main:
        for d, saved in zip(dirs, latest, strict=True):
            _cut_metrics(RunDir(d).metrics, saved.counters.metrics_offset)
    return runs, latest[0].counters


def _cut_metrics(path: Path, offset: int) -> None:
    # Rows written after the checkpoint (by the run that was killed) are logged again on resume.
    if path.exists() and path.stat().st_size > offset:
        os.truncate(path, offset)
