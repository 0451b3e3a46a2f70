"""Weights & Biases: one W&B run per sae-kit run, named after its directory.

The project is ``$WANDB_PROJECT`` (default "sae-kit"); ``WANDB_MODE=offline`` writes the run under
the run directory's ``wandb/`` for a later ``wandb sync``. Needs ``pip install wandb``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sae_kit.trackers.base import Tracker, numbers, require


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        wandb = require("wandb", self.name)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "sae-kit"),
                              name=Path(run_dir).name, dir=str(run_dir), config=config,
                              reinit="create_new")

    def log(self, row: dict[str, Any]) -> None:
        values = numbers(row)
        step = int(values.pop("step"))
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()
