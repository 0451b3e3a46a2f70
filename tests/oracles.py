"""All-at-once metric formulas that the tests check sae-kit's streaming sums against.

The evaluation never calls these: it accumulates ``VarianceSums`` and ``TokenMean`` batch by
batch (sae_kit/eval/metrics.py). Each oracle is the definition in docs/eval.md on all tokens at
once, so a test can hold the streaming value to it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """Flatten to (n_tokens, features) in float64."""
    return x.reshape(-1, x.shape[-1]).double()


def alive_fraction(fired_mask: torch.Tensor) -> float:
    return float(fired_mask.double().mean())


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean over every element of (x - x_hat)^2."""
    return float(((_tokens(x) - _tokens(x_hat)) ** 2).mean())


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """1 - sum_t ||x_t - x_hat_t||^2 / sum_t ||x_t - mean||^2, mean over all tokens t."""
    x64, x_hat64 = _tokens(x), _tokens(x_hat)
    residual = ((x64 - x_hat64) ** 2).sum()
    total = ((x64 - x64.mean(0)) ** 2).sum()
    return float(1 - residual / total)


def downstream_mse(
    clean: Mapping[int, torch.Tensor], spliced: Mapping[int, torch.Tensor]
) -> dict[int, float]:
    """Element-mean MSE between spliced and original residual streams, per position."""
    return {p: mse(spliced[p], clean[p]) for p in sorted(clean)}
