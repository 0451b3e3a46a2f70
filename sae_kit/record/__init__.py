"""The record of a training run, below everything that reads one: its settings and what they
came to.

``config`` declares every training option once (``TrainConfig``, and the model-dependent
defaults in one table, ``MODEL_DEFAULTS``); ``run_record`` holds ``Resolved`` (what the settings
resolved to on one model and machine: context, sizes, steps, model type, adapter, device, world
size) and ``RunRecord`` (both together, as a run's ``config.json`` stores them, and the data spec
derived from them). ``sae_kit.store.run_dir.RunDir.read`` is the one reader of a run directory;
``train`` writes the record, ``eval``, ``store`` and ``sweep`` read its attributes. No torch at
import time. May import the top-level kernel modules only; never ``model``, ``losses``,
``architectures``, ``trackers``, ``train``, ``eval``, ``store``, ``sweep`` or ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sae_kit.exports import lazy_exports

if TYPE_CHECKING:
    from sae_kit.record.config import MODEL_DEFAULTS, TrainConfig
    from sae_kit.record.run_record import Resolved, RunRecord

__all__ = [  # what the package offers; each name imported from its module on first use
    "MODEL_DEFAULTS", "Resolved", "RunRecord", "TrainConfig",
]
_NAMES = {
    "TrainConfig": "config",
    "MODEL_DEFAULTS": "config",
    "Resolved": "run_record",
    "RunRecord": "run_record",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
