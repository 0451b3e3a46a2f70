"""Each analysis and evaluation command's defaults, declared once and torch-free.

The pipelines (:mod:`sae_kit.eval.evaluation`, :mod:`.analysis.features`,
:mod:`.analysis.importance`, :mod:`.analysis.compare`, :mod:`.bench`, :mod:`.probe_run`) default
to these values and the CLI reads its option defaults from them, so a default is changed in one
place. No torch here: the CLI imports this module at start-up.
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
    n_tokens: int = EVAL.alive_tokens
    """The tokens `sae-kit eval` counts alive elements on: the report's dead features are eval's
    (--importance reads the held-out part instead, ImportanceSettings.n_tokens of it)."""
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


@dataclass(frozen=True)
class BenchSettings:
    """`sae-kit bench`'s defaults."""

    threshold: float = 0.9
    """A true feature counts as recovered at cosine >= 0.9 (the convention of synthetic-feature
    studies since Sharkey et al. 2022)."""
    n_tokens: int = 50_000
    """Held-out tokens for the CE increase: the synthetic model's CE is stable to ~1e-3 nats on
    50k tokens, and the whole bench of a sweep must fit in minutes on a 2-core CPU."""
    alive_tokens: int = 100_000
    """The rarest default synthetic feature fires ~1 token in 900: 100k tokens see it ~100
    times."""
    batch_tokens: int = 8192
    """Tokens per forward pass: 8 windows of GPT-2's 1024, 256 of the synthetic model's 32. At 8
    windows of 32 tokens a 27-run sweep took ~14 min on the 2-core CPU; the pass overhead, not
    the arithmetic, dominated (docs/experiments/ground-truth.md)."""


BENCH = BenchSettings()


@dataclass(frozen=True)
class ProbeSettings:
    """`sae-kit probe`'s defaults."""

    ks: tuple[int, ...] = (1, 2, 5)
    """Latents per sparse probe (sae-probes' and SAEBench's k)."""
    max_examples: int = 1000
    """Prompts per task: sae-probes' "normal" setting trains on 1024 or fewer."""
    batch_size: int = 16
    """Prompts per forward pass."""
    seed: int = 0


PROBE = ProbeSettings()
