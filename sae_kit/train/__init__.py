"""Training: the run, the loop, schedule, checkpoints, resume and what guards them.

The options themselves (``TrainConfig``) and a run's record live in ``sae_kit.record``, below
this package, so that evaluation and storage read them too. ``build`` makes a ``Run`` from a
config, one small function per job, without changing the config it is given; ``run`` holds
the ``Run`` and moves its state in and out of a checkpoint tree; ``loop`` fits a run;
``checkpoint`` stores trees atomically and ``resume`` rebuilds a run from its latest one,
bit-exactly; ``signals`` turns SIGINT/SIGTERM into a saved
checkpoint; ``nonfinite`` stops on NaN/inf; ``distributed`` and ``precision`` wrap torchrun and
dtypes; ``schedule`` is the learning-rate curve; ``stats`` accumulates and logs step metrics
(and hands rows to the experiment trackers). ``group`` trains several runs in one shared pass;
``settings_file`` reads TOML/JSON/YAML settings; ``clean_cache`` writes and reads the
clean-pass cache; ``api`` is the Python API (:func:`~sae_kit.train.api.train_saes`, also
``sae_kit.train_saes``). May import ``record``, ``model``, ``store``, ``losses``,
``architectures``, ``trackers`` and the top-level kernel modules; never ``eval`` or ``cli``. The
loop names no loss and no model family: both are plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sae_kit.exports import lazy_exports

if TYPE_CHECKING:
    from sae_kit.train.api import train_saes
    from sae_kit.train.build import build_run
    from sae_kit.train.checkpoint import TrainState
    from sae_kit.train.loop import fit
    from sae_kit.train.resume import resume_config
    from sae_kit.train.run import Run

__all__ = [  # what the package offers; each name imported from its module on first use
    "build_run", "fit", "resume_config", "Run", "train_saes", "TrainState",
]
_NAMES = {
    "Run": "run",
    "build_run": "build",
    "train_saes": "api",
    "fit": "loop",
    "TrainState": "checkpoint",
    "resume_config": "resume",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
