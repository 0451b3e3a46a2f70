"""TensorBoard: event files in the run directory's ``tensorboard/``; ``tensorboard --logdir runs``.

The run's settings go in once, at the start: as hyperparameters (the HPARAMS tab, one row per
run, so the runs of a sweep compare side by side against their last ``loss``) and as the whole
config as text (TEXT tab). Needs ``pip install tensorboard``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sae_kit.trackers.base import Tracker, numbers, require


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    @classmethod
    def check(cls) -> None:
        require("tensorboard", cls.name)

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        require("tensorboard", self.name)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self._write_settings(config)

    def _write_settings(self, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # Written into this run's own event file (SummaryWriter.add_hparams would open a
        # sub-run), so HPARAMS shows one row per sae-kit run.
        experiment, start, end = hparams(hparam_values(config), {"loss": 0.0})
        file_writer = self.writer.file_writer
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        self.writer.add_text("config", "```\n" + text + "\n```", 0)

    def log(self, row: dict[str, Any]) -> None:
        values = numbers(row)
        step = int(values.pop("step"))
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def hparam_values(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config flattened to what TensorBoard's hparams take: numbers, strings and booleans
    (a nested table's keys joined by '.', lists and None as their JSON text)."""
    values: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            values.update(hparam_values(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            values[name] = value
        else:
            values[name] = json.dumps(value, default=str)
    return values
