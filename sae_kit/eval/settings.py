"""Each analysis and evaluation command's defaults, declared once and torch-free.

The pipelines (:mod:`sae_kit.eval.evaluation`, :mod:`.analysis.features`,
:mod:`.analysis.importance`, :mod:`.analysis.compare`) default to these values and the CLI
reads its option defaults from them, so a default is changed in one place. No torch here: the
CLI imports this module at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalSizes:
    """`sae-kit eval`'s sizes."""

    n_tokens: int = 100_000
    """Enough for stable CE/KL on a real model; the built-in text has fewer held-out tokens."""
    batch_size: int = 8
    """Windows per forward pass; the reference's explained variance is a mean over batches of 8."""
    alive_tokens: int = 500_000
    """The reference's count for GPT-2 (``act_frequency_n_tokens``)."""
    paper_windows: int = 500
    """--paper-compatible: the reference evaluated on 500 samples (``eval_n_samples``)."""


EVAL = EvalSizes()


@dataclass(frozen=True)
class CompareSettings:
    """`sae-kit compare`'s sizes."""

    n_tokens: int = 100_000
    """Held-out tokens for alive elements and the reconstruction norms."""
    batch_size: int = 8


COMPARE = CompareSettings()


@dataclass
class FeatureSettings:
    n_tokens: int = 50_000
    batch_size: int = 8
    top_k: int = 10
    """Top-activating contexts per feature."""
    quantiles: int = 4
    """Activation quantile groups sampled below the top."""
    per_quantile: int = 3
    reservoir: int = 16
    """Uniformly sampled firing tokens per feature, from which the quantile samples are drawn."""
    before: int = 12
    after: int = 4
    """Tokens shown before and after the one a context is centred on."""
    n_logits: int = 10
    n_neighbours: int = 8
    seed: int = 0


@dataclass
class ImportanceSettings:
    n_tokens: int = 50_000
    batch_size: int = 8
    """Windows per forward pass, and (window, feature) pairs per exact-ablation forward."""
    exact_top: int = 32
    """Features with the largest |attribution| (KL, default convention) ablated exactly."""
    exact_random: int = 32
    """Other features that fire, drawn at random (seeded), ablated exactly."""
    seed: int = 0
