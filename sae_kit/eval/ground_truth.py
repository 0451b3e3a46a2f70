"""How well a dictionary recovers known features (``sae-kit bench``, docs/bench.md).

Given the true feature directions (rows of ``GroundTruth.directions``) and an SAE's decoder
(columns of ``W_dec``), with C the matrix of cosine similarities between the two:

* ``mmcs`` (true -> dictionary): each true feature's largest cosine with any latent, averaged -
  the mean max cosine similarity of Sharkey et al. 2022;
* ``mmcs_back`` (dictionary -> true): each latent's largest cosine with any true feature,
  averaged over latents (how many latents point at nothing real);
* ``mcc``: the mean cosine under the best one-to-one matching of true features to latents
  (Hungarian algorithm on C; a true feature left unmatched, when there are fewer latents than
  features, counts 0), so two latents on one feature are not both credited;
* ``recovered``: the share of true features whose ``mmcs`` is at least ``threshold``.

Each is reported for all features, for the functional set F and for the rest. Dead latents are
left out when an alive mask is given: they never fire, so they recover nothing. ``chance_mmcs``
is what a dictionary of as many random directions scores (exact, not sampled).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sae_kit.eval.analysis.geometry import unit_columns
from sae_kit.eval.settings import BENCH
from sae_kit.model.source import GroundTruth

SUBSETS = ("all", "functional", "rest")


def cosines(truth: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """(n_features, n_latents) cosines: ``truth`` rows against ``decoder`` (d, n) columns."""
    return unit_columns(truth.T).T @ unit_columns(decoder)


def matched_cosines(cos: torch.Tensor) -> torch.Tensor:
    """Per true feature, its cosine with the latent the best one-to-one matching gives it."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cos.double().numpy(), maximize=True)
    matched = torch.zeros(cos.shape[0], dtype=torch.float64)
    matched[torch.as_tensor(rows)] = cos.double()[torch.as_tensor(rows), torch.as_tensor(cols)]
    return matched


def chance_mmcs(d: int, n: int, steps: int = 20_001) -> float:
    """E[max cosine of a fixed unit vector with n random unit vectors in R^d].

    With theta the angle to one random vector (density ~ sin^(d-2)), the maximum cosine is
    cos(min theta) and E = -1 + integral_0^pi sin(t) (1 - (1 - G(t))^n) dt, G the CDF of theta.
    """
    if d == 1:  # cosines are +-1, each sign with probability 1/2
        return 1 - 2.0 ** (1 - n)
    t = torch.linspace(0, math.pi, steps, dtype=torch.float64)
    density = t.sin() ** (d - 2)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                     torch.cumulative_trapezoid(density, t)])
    cdf = cdf / cdf[-1]
    above = t.sin() * (1 - (1 - cdf).clamp(min=0) ** n)
    return float(-1 + torch.trapezoid(above, t))


def recovery(truth: GroundTruth, decoder: torch.Tensor, alive: torch.Tensor | None = None,
             threshold: float = BENCH.threshold) -> dict[str, Any]:
    """The recovery metrics of one dictionary, per subset (all, functional, rest)."""
    if alive is not None:
        decoder = decoder[:, alive.to(torch.bool).cpu()]
    n_latents = decoder.shape[1]
    masks = {"all": torch.ones_like(truth.functional, dtype=torch.bool),
             "functional": truth.functional.bool(), "rest": ~truth.functional.bool()}
    out: dict[str, Any] = {"n_latents": n_latents, "threshold": threshold,
                           "chance_mmcs": chance_mmcs(decoder.shape[0], n_latents)
                           if n_latents else 0.0}
    if n_latents == 0:  # every latent dead: nothing recovered
        best = matched = torch.zeros(len(truth.functional), dtype=torch.float64)
        out.update(mmcs_back=None, latents_on_functional=None)
    else:
        cos = cosines(truth.directions.float(), decoder.float())
        best, matched = cos.max(dim=1).values.double(), matched_cosines(cos)
        nearest = cos.argmax(dim=0)  # each latent's nearest true feature
        out.update(mmcs_back=float(cos.max(dim=0).values.double().mean()),
                   latents_on_functional=float(truth.functional[nearest].double().mean()))
    for name, mask in masks.items():
        out[name] = _subset(best, matched, mask, threshold)
    return out


def _subset(best: torch.Tensor, matched: torch.Tensor, mask: torch.Tensor,
            threshold: float) -> dict[str, Any]:
    n = int(mask.sum())
    if n == 0:
        return {"n": 0, "mmcs": None, "mcc": None, "recovered": None}
    return {"n": n, "mmcs": float(best[mask].mean()), "mcc": float(matched[mask].mean()),
            "recovered": float((best[mask] >= threshold).double().mean())}
