"""Evaluation: metrics, the evaluation of a trained run on held-out text, and the Pareto plot.

``metrics`` holds the pure tensor statistics (L0, KL, CE, explained variance); ``evaluation``
runs a trained run's SAEs over held-out windows and writes ``eval.json``; ``pareto`` plots L0
against CE-loss increase across runs; ``analysis`` (feature statistics, dictionary geometry,
the data of `sae-kit features`, `sae-kit compare`) and ``report`` (the HTML feature report,
the view of that data) look inside trained dictionaries; ``feature_report`` composes the two
into `sae-kit features`; ``explain`` explains and scores features with an LLM. May import
``record``, ``model``, ``store``, ``losses``, ``architectures``, ``explainers`` and the
top-level kernel modules; never ``train`` or ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sae_kit.exports import lazy_exports

if TYPE_CHECKING:
    from sae_kit.eval.evaluation import evaluate_run
    from sae_kit.eval.pareto import plot_pareto

__all__ = [  # what the package offers; each name imported from its module on first use
    "evaluate_run", "plot_pareto",
]
_NAMES = {
    "evaluate_run": "evaluation",
    "plot_pareto": "pareto",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
