"""Experiment trackers: plugins in the ``sae_kit.trackers`` entry-point group.

``sae-kit train --tracker wandb --tracker tensorboard`` sends every metrics row to each chosen
tracker as well; ``metrics.jsonl`` stays the record (resume cuts and rewrites it, a tracker only
ever sees rows appended). ``base`` is the interface; ``wandb`` and ``tensorboard`` are the
first-party plugins, each importing its package only when chosen. May import the top-level
kernel modules only; never ``train``, ``eval`` or ``cli``.
"""
