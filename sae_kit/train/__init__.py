"""Training: config, the run, the loop, schedule, checkpoints, resume and what guards them.

``config`` declares every training option once (and the model-dependent defaults in one table);
``build`` makes a ``Run`` from a config, one small function per job, without changing the config
it is given; ``run`` holds the ``Run`` and moves its state in and out of a checkpoint tree;
``loop`` fits a run; ``checkpoint`` stores trees atomically and ``resume`` rebuilds a run from
its latest one, bit-exactly; ``signals`` turns SIGINT/SIGTERM into a saved
checkpoint; ``nonfinite`` stops on NaN/inf; ``distributed`` and ``precision`` wrap torchrun and
dtypes; ``schedule`` is the learning-rate curve; ``stats`` accumulates and logs step metrics. May
import ``model``, ``store``, ``losses``, ``architectures`` and the top-level kernel modules;
never ``eval`` or ``cli``. The loop names no loss and no model family: both are plugins.

``from sae_kit import train`` gives this package, and calling it calls
:func:`sae_kit.api.train`: a package cannot also be a function, so the package is callable.
"""

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sae_kit.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
