"""Evaluation metrics as pure functions, plus mergeable sums for evaluating batch by batch.

Every function takes tensors whose last dimension is the feature dimension (d_model, n_dict or
vocab) and treats all leading dimensions as tokens. Definitions are in docs/eval.md.

Over many batches a metric must equal the metric on all tokens at once, so nothing averages
per-batch ratios: ``TokenMean`` weights every batch by its token count and ``VarianceSums``
merges per-batch sums exactly (Chan et al.'s parallel variance), both in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sae_kit.architectures.codes import active, mean_per_token
from sae_kit.losses.kl import kl_divergence

__all__ = [
    "TokenMean", "VarianceSums", "ce_loss", "explained_variance_e2e_sae", "fired",
    "kl_divergence", "l0",
]


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """Flatten to (n_tokens, features) in float64."""
    return x.reshape(-1, x.shape[-1]).double()


def l0(codes: torch.Tensor) -> float:
    """Mean over tokens of the number of active (non-zero) dictionary coefficients."""
    return mean_per_token(active(codes))


def fired(codes: torch.Tensor) -> torch.Tensor:
    """Boolean mask over dictionary elements: active (non-zero) on at least one token."""
    return active(codes).reshape(-1, codes.shape[-1]).any(0)


def ce_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> float:
    """Next-token cross-entropy in nats: position t predicts token t + 1 of the same row.

    ``logits`` is (..., seq, vocab) and ``input_ids`` (..., seq); the last position of each row
    has no target and is left out.
    """
    predicted = logits[..., :-1, :].reshape(-1, logits.shape[-1]).float()
    targets = input_ids[..., 1:].reshape(-1)
    return float(F.cross_entropy(predicted, targets))


def explained_variance_e2e_sae(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The reference's (e2e_sae's) logged explained variance, one value per token.

    1 - ||x_t - x_hat_t||^2 / ||x_hat_t - mean(x_hat)||^2, the mean over the tokens given (one
    batch). The reference passes (input, output), so its *target* is the SAE's output: the
    spread in the denominator is the reconstruction's, per token. Averaged over tokens it is
    what the paper's figures read, and it is often negative for e2e SAEs. Kept for comparison
    only; ``VarianceSums.explained_variance`` is sae-kit's headline value.
    """
    x64, out64 = _tokens(x), _tokens(x_hat)
    residual = ((x64 - out64) ** 2).sum(-1)
    spread = ((out64 - out64.mean(0)) ** 2).sum(-1)
    return 1 - residual / spread


class TokenMean:
    """A mean over tokens, accumulated from per-batch means weighted by their token counts."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, batch_mean: float, n_tokens: int) -> None:
        self.total += float(batch_mean) * n_tokens
        self.count += n_tokens

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


class VarianceSums:
    """Sums that give explained variance and MSE over every token seen, batch by batch.

    Holds the token count, the running mean of x, sum ||x - mean||^2 (merged exactly across
    batches, so the mean is over all tokens, not per batch) and sum ||x - x_hat||^2.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2 = 0.0
        self.sse = 0.0
        self.width = 0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        x64, x_hat64 = _tokens(x).cpu(), _tokens(x_hat).cpu()
        n_b = x64.shape[0]
        mean_b = x64.mean(0)
        m2_b = float(((x64 - mean_b) ** 2).sum())
        self.sse += float(((x64 - x_hat64) ** 2).sum())
        self.width = x64.shape[1]
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 += m2_b + float(delta @ delta) * self.n * n_b / n
        self.mean = self.mean + delta * (n_b / n)
        self.n = n

    @property
    def explained_variance(self) -> float:
        return 1 - self.sse / self.m2 if self.m2 > 0 else float("nan")

    @property
    def mse(self) -> float:
        return self.sse / (self.n * self.width) if self.n else float("nan")
