"""TensorBoard: event files in the run directory's ``tensorboard/``; ``tensorboard --logdir runs``.

Needs ``pip install tensorboard``.
"""

from __future__ import annotations

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

    def log(self, row: dict[str, Any]) -> None:
        values = numbers(row)
        step = int(values.pop("step"))
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
