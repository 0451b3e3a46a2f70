"""Evaluation: metrics, the evaluation of a trained run on held-out text, and the Pareto plot.

``metrics`` holds the pure tensor statistics (L0, KL, CE, explained variance); ``evaluation``
runs a trained run's SAEs over held-out windows and writes ``eval.json``; ``pareto`` plots L0
against CE-loss increase across runs. May import ``model``, ``store``, ``losses``,
``architectures`` and the top-level kernel modules; never ``train`` or ``cli``.
"""

# Enough for stable CE/KL on a real model; the built-in text has fewer held-out tokens.
DEFAULT_N_TOKENS = 100_000
