"""Training: config, the run, the loop, schedule, checkpoints, resume and what guards them.

``config`` declares every training option once; ``loop`` builds a run and fits it; ``checkpoint``
and ``resume`` save and restore a run bit-exactly; ``signals`` turns SIGINT/SIGTERM into a saved
checkpoint; ``nonfinite`` stops on NaN/inf; ``distributed`` and ``precision`` wrap torchrun and
dtypes; ``schedule`` is the learning-rate curve; ``stats`` accumulates and logs step metrics. May
import ``model``, ``store``, ``losses``, ``architectures`` and the top-level kernel modules;
never ``eval`` or ``cli``. The loop names no loss and no model family: both are plugins.
"""
