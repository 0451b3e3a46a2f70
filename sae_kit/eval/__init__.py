"""Evaluation: metrics, the evaluation of a trained run on held-out text, and the Pareto plot.

``metrics`` holds the pure tensor statistics (L0, KL, CE, explained variance); ``evaluation``
runs a trained run's SAEs over held-out windows and writes ``eval.json``; ``pareto`` plots L0
against CE-loss increase across runs; ``analysis`` (feature statistics, dictionary geometry,
`sae-kit features` and `sae-kit compare`) and ``report`` (the HTML feature report) look inside
trained dictionaries. May import ``model``, ``store``, ``losses``,
``architectures`` and the top-level kernel modules; never ``train`` or ``cli``.
"""
