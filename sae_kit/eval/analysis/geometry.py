"""Dictionary geometry and the activation analysis of Braun et al. 2024 (section 3.3).

Dictionaries are given as (d_in, n) matrices whose columns are the elements (``SAE.W_dec``);
they are normalised here, so raw decoders can be passed. Cosine matrices are built in column
chunks, so an n x n matrix is never held whole.
"""

from __future__ import annotations

import math

import torch

CHUNK = 4096
"""Columns per chunk of a cosine matrix: 4096 x 46k fp32 (GPT-2 x60) is ~750 MB."""


def unit_columns(dictionary: torch.Tensor) -> torch.Tensor:
    d = dictionary.detach().float().cpu()
    return d / d.norm(dim=0, keepdim=True).clamp(min=1e-12)


def top_cosine(a: torch.Tensor, b: torch.Tensor, k: int = 1,
               exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """For each column of ``a``, the k largest cosine similarities to columns of ``b``.

    Returns (values, indices), each (n_a, k). With ``exclude_self`` (``a`` is ``b``) an element
    is never its own neighbour.
    """
    a, b = unit_columns(a), unit_columns(b)
    values, indices = [], []
    for start in range(0, a.shape[1], CHUNK):
        cos = a[:, start:start + CHUNK].T @ b  # (chunk, n_b)
        if exclude_self:
            rows = torch.arange(cos.shape[0])
            cos[rows, rows + start] = -math.inf
        v, i = cos.topk(min(k, cos.shape[1]), dim=1)
        values.append(v)
        indices.append(i)
    return torch.cat(values), torch.cat(indices)


def max_cosine_within(dictionary: torch.Tensor) -> torch.Tensor:
    """Each element's maximum cosine similarity to the *other* elements of its dictionary."""
    return top_cosine(dictionary, dictionary, exclude_self=True)[0][:, 0]


def max_cosine_across(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Each element of ``a``'s maximum cosine similarity to the elements of ``b``."""
    return top_cosine(a, b)[0][:, 0]


def same_index_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine between element j of ``a`` and element j of ``b`` (a decoder and its init)."""
    return (unit_columns(a) * unit_columns(b)).sum(0)


def random_dictionary(d_in: int, n: int, seed: int = 0) -> torch.Tensor:
    """n directions uniform on the sphere: the baseline a max cosine is compared with."""
    return torch.randn(d_in, n, generator=torch.Generator().manual_seed(seed))


def permutation_test(x: torch.Tensor, y: torch.Tensor, n_permutations: int = 2000,
                     seed: int = 0) -> float:
    """Two-sided p-value that ``x`` and ``y`` have the same mean (difference of means).

    The pooled values are shuffled ``n_permutations`` times; p = (1 + #|diff| >= observed) /
    (1 + n_permutations), so it is never 0.
    """
    x, y = x.double().flatten(), y.double().flatten()
    pooled = torch.cat([x, y])
    observed = abs(float(x.mean() - y.mean()))
    generator = torch.Generator().manual_seed(seed)
    hits = 0
    for start in range(0, n_permutations, 256):
        n = min(256, n_permutations - start)
        perms = torch.argsort(torch.rand(n, len(pooled), generator=generator), dim=1)
        shuffled = pooled[perms]
        diffs = shuffled[:, :len(x)].mean(1) - shuffled[:, len(x):].mean(1)
        # A tolerance: a permutation that reproduces the split exactly must count as a hit.
        hits += int((diffs.abs() >= observed - 1e-12).sum())
    return (1 + hits) / (1 + n_permutations)


class ActivationSums:
    """‖â‖/‖a‖ and cos(â, a) per token, summed per position over rows (float64)."""

    def __init__(self) -> None:
        self.ratio: torch.Tensor | None = None
        self.cosine: torch.Tensor | None = None
        self.rows = 0

    def add(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """x, x_hat: (batch, seq, d) SAE inputs and reconstructions."""
        x, x_hat = x.detach().double().cpu(), x_hat.detach().double().cpu()
        norm, norm_hat = x.norm(dim=-1), x_hat.norm(dim=-1)
        ratio = (norm_hat / norm.clamp(min=1e-12)).sum(0)
        cosine = ((x * x_hat).sum(-1) / (norm * norm_hat).clamp(min=1e-12)).sum(0)
        if self.ratio is None:
            self.ratio, self.cosine = ratio, cosine
        else:
            self.ratio, self.cosine = self.ratio + ratio, self.cosine + cosine
        self.rows += x.shape[0]

    def per_position(self) -> dict[str, list[float]]:
        if self.ratio is None:
            return {"l2_ratio": [], "cosine": []}
        return {"l2_ratio": (self.ratio / self.rows).tolist(),
                "cosine": (self.cosine / self.rows).tolist()}

    def summary(self) -> dict[str, float]:
        """Means over every token except position 0, whose norms are outliers."""
        if self.ratio is None or len(self.ratio) < 2:
            return {"l2_ratio": math.nan, "cosine": math.nan}
        n = self.rows * (len(self.ratio) - 1)
        return {"l2_ratio": float(self.ratio[1:].sum()) / n,
                "cosine": float(self.cosine[1:].sum()) / n}
