"""Training: config, the run, the loop, schedule, checkpoints, resume and what guards them.

``config`` declares every training option once (and the model-dependent defaults in one table);
``build`` makes a ``Run`` from a config, one small function per job, without changing the config
it is given; ``run`` holds the ``Run`` and moves its state in and out of a checkpoint tree;
``loop`` fits a run; ``checkpoint`` stores trees atomically and ``resume`` rebuilds a run from
its latest one, bit-exactly; ``signals`` turns SIGINT/SIGTERM into a saved
checkpoint; ``nonfinite`` stops on NaN/inf; ``distributed`` and ``precision`` wrap torchrun and
dtypes; ``schedule`` is the learning-rate curve; ``stats`` accumulates and logs step metrics
(and hands rows to the experiment trackers). ``group`` trains several runs in one shared pass;
``settings_file`` reads TOML/JSON/YAML settings; ``api`` is the Python API. May import
``model``, ``store``, ``losses``, ``architectures``, ``trackers`` and the top-level kernel
modules; never ``eval`` or ``cli``. The loop names no loss and no model family: both are plugins.

``from sae_kit import train`` gives this package, and calling it calls
:func:`sae_kit.train.api.train`: a package cannot also be a function, so the package is callable.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from sae_kit.exports import lazy_exports

if TYPE_CHECKING:
    from sae_kit.train.build import build_run
    from sae_kit.train.checkpoint import TrainState
    from sae_kit.train.config import MODEL_DEFAULTS, TrainConfig
    from sae_kit.train.loop import fit, train
    from sae_kit.train.resume import resume_config
    from sae_kit.train.run import Run

__all__ = [  # what the package offers; each name imported from its module on first use
    "build_run", "fit", "MODEL_DEFAULTS", "resume_config", "Run", "train", "TrainConfig",
    "TrainState",
]
_NAMES = {
    "TrainConfig": "config",
    "MODEL_DEFAULTS": "config",
    "Run": "run",
    "build_run": "build",
    "train": "loop",
    "fit": "loop",
    "TrainState": "checkpoint",
    "resume_config": "resume",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sae_kit.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
