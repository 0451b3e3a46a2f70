"""Per-feature functional importance: first-order attribution and exact ablation, batch by batch.

The attribution of feature i at token t is the estimated change of a metric M when its code
c_i(t) goes to zero: -c_i(t) * dM/dc_i(t), with M the metric summed over every position of the
window (a code at t changes every later prediction). Two metrics (KL(p_original || p_model) and
next-token CE, both in nats) under two conventions for the model the metric is taken on:

- ``spliced`` (default): the model runs on the SAE's reconstruction x-hat = decode(c), and
  feature i leaves x-hat. The convention an e2e SAE is trained under.
- ``with_error``: the model runs on x-hat + (x - x-hat) = x, the error term held fixed, and
  feature i's c_i * d_i leaves x. Isolates the feature from the SAE's reconstruction error.
  Here the unablated model *is* the original one, where KL is at its minimum: its gradient is
  zero, so the first-order KL attribution is ~0 by construction and only the exact ablation
  (a second-order effect) measures KL. CE has no such minimum.

Everything here is pure tensor code on one batch; :mod:`.importance` streams batches through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError

CONVENTIONS = ("spliced", "with_error")
DEFAULT_CONVENTION = "spliced"
METRICS = ("kl", "ce")

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(input_ids, activation at the SAE's position) -> final hidden states: the unembedding's input."""


def model_input(sae: SAE, codes: torch.Tensor, x: torch.Tensor, convention: str) -> torch.Tensor:
    """What the model runs on at the SAE's position, as a function of ``codes``."""
    x_hat = sae.decode(codes)
    if convention == "spliced":
        return x_hat
    if convention == "with_error":
        return x_hat + (x.to(x_hat.dtype) - x_hat).detach()
    raise SaeKitError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")


@dataclass
class WindowMetrics:
    """Per window (row), the metrics summed over its positions; gradients of their totals."""

    kl: torch.Tensor
    ce: torch.Tensor
    clean_ce: torch.Tensor
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    """d(sum of the metric over the batch) / d(final hidden states), when asked for."""


def window_metrics(hidden: torch.Tensor, clean_hidden: torch.Tensor, input_ids: torch.Tensor,
                   unembed: nn.Module, want_grad: bool = False) -> WindowMetrics:
    """KL and CE per window from final hidden states, one window's logits at a time.

    Only one window's [context, vocab] logits exist at once, so memory does not grow with the
    batch's vocabulary-sized tensors; gradients stop at the final hidden states.
    """
    kl, ce, clean_ce, grads = [], [], [], {m: [] for m in METRICS}
    for row in range(hidden.shape[0]):
        h = hidden[row].detach().requires_grad_(want_grad)
        with torch.no_grad():
            log_p = F.log_softmax(unembed(clean_hidden[row]).float(), dim=-1)
            targets = input_ids[row, 1:]
            clean_ce.append(F.nll_loss(log_p[:-1], targets, reduction="sum"))
        with torch.set_grad_enabled(want_grad):
            log_q = F.log_softmax(unembed(h).float(), dim=-1)
            row_kl = (log_p.exp() * (log_p - log_q)).sum()
            row_ce = F.nll_loss(log_q[:-1], targets, reduction="sum")
            if want_grad:
                grads["kl"].append(torch.autograd.grad(row_kl, h, retain_graph=True)[0])
                grads["ce"].append(torch.autograd.grad(row_ce, h)[0])
        kl.append(row_kl.detach())
        ce.append(row_ce.detach())
    out = WindowMetrics(torch.stack(kl).double(), torch.stack(ce).double(),
                        torch.stack(clean_ce).double())
    if want_grad:
        out.grads = {m: torch.stack(g).to(hidden.dtype) for m, g in grads.items()}
    return out


Measure = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, nn.Module, bool], WindowMetrics]
"""(hidden, clean hidden, input_ids, unembedding, want_grad) -> metrics per window."""


def code_attributions(sae: SAE, codes: torch.Tensor, x: torch.Tensor, convention: str,
                      forward: Forward, input_ids: torch.Tensor, clean_hidden: torch.Tensor,
                      unembed: nn.Module, measure: Measure | None = None,
                      ) -> tuple[dict[str, torch.Tensor], WindowMetrics]:
    """-c * dM/dc per token and feature for each metric, and the unablated window metrics.

    One forward from the SAE's position and one backward per metric; the graph is freed after.
    ``measure`` replaces :func:`window_metrics` (tests use a linear one).
    """
    measure = measure or window_metrics
    leaf = codes.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        h = model_input(sae, leaf, x, convention)
        if not h.requires_grad:
            raise SaeKitError(f"the {sae.name!r} architecture's decoder gives no gradient with "
                              "respect to its codes, so attribution cannot be computed; use an "
                              "architecture whose decode is differentiable")
        hidden = forward(input_ids, h)
        metrics = measure(hidden, clean_hidden, input_ids, unembed, True)
        out = {}
        for i, m in enumerate(METRICS):
            (grad,) = torch.autograd.grad(hidden, leaf, metrics.grads[m],
                                          retain_graph=i < len(METRICS) - 1)
            out[m] = -(codes * grad).detach()
    metrics.grads = {}
    return out, metrics


@dataclass
class AttributionSums:
    """Per-feature sums over tokens of the attributions (signed and absolute), in float64."""

    n_dict: int
    signed: dict[str, torch.Tensor] = field(default_factory=dict)
    absolute: dict[str, torch.Tensor] = field(default_factory=dict)
    base: dict[str, float] = field(default_factory=dict)
    """Sum over all tokens of each metric of the unablated model (and the clean CE)."""

    def __post_init__(self) -> None:
        for m in METRICS:
            self.signed[m] = torch.zeros(self.n_dict, dtype=torch.float64)
            self.absolute[m] = torch.zeros(self.n_dict, dtype=torch.float64)
        self.base = {"kl": 0.0, "ce": 0.0, "clean_ce": 0.0}

    def add(self, attributions: dict[str, torch.Tensor], metrics: WindowMetrics) -> None:
        for m, a in attributions.items():
            flat = a.reshape(-1, self.n_dict).double().cpu()
            self.signed[m] += flat.sum(0)
            self.absolute[m] += flat.abs().sum(0)
        self.base["kl"] += float(metrics.kl.sum())
        self.base["ce"] += float(metrics.ce.sum())
        self.base["clean_ce"] += float(metrics.clean_ce.sum())


def ablation_pairs(codes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """(window, slot) pairs where feature ``features[slot]`` fires somewhere in the window.

    Only these need a rerun: a feature that never fires in a window changes nothing there.
    """
    fires = (codes[..., features] != 0).any(dim=1)  # [windows, slots]
    return fires.nonzero()


def exact_ablation_deltas(sae: SAE, codes: torch.Tensor, x: torch.Tensor, convention: str,
                          forward: Forward, input_ids: torch.Tensor, clean_hidden: torch.Tensor,
                          unembed: nn.Module, base: WindowMetrics, features: torch.Tensor,
                          rows_per_forward: int, measure: Measure | None = None,
                          ) -> dict[str, torch.Tensor]:
    """Per slot of ``features``: the summed change of each metric when its code is zeroed.

    Each forward carries up to ``rows_per_forward`` (window, feature) pairs, so features that
    fire in different windows (or in the same one) share a pass; a window's pairs are
    independent reruns of that window.
    """
    measure = measure or window_metrics
    deltas = {m: torch.zeros(len(features), dtype=torch.float64) for m in METRICS}
    pairs = ablation_pairs(codes, features)
    err = None if convention == "spliced" else x.to(codes.dtype) - sae.decode(codes)
    with torch.no_grad():
        for lo in range(0, len(pairs), rows_per_forward):
            windows, slots = pairs[lo:lo + rows_per_forward].unbind(1)
            zeroed = codes[windows].clone()
            zeroed[torch.arange(len(windows)), :, features[slots]] = 0.0
            h = sae.decode(zeroed) if err is None else sae.decode(zeroed) + err[windows]
            hidden = forward(input_ids[windows], h)
            ablated = measure(hidden, clean_hidden[windows], input_ids[windows], unembed, False)
            for m in METRICS:
                change = getattr(ablated, m) - getattr(base, m)[windows]
                deltas[m].index_add_(0, slots.cpu(), change.cpu())
    return deltas


def spearman(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Spearman rank correlation (average ranks for ties); None for fewer than 3 points or a
    constant input."""
    if len(a) < 3:
        return None
    ra, rb = _ranks(a.double()), _ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float((ra.square().sum() * rb.square().sum()).sqrt())
    return float((ra * rb).sum()) / denominator if denominator > 0 else None


def _ranks(x: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=x.dtype)
    for value in torch.unique(x):  # average the ranks of ties
        tied = x == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def top_shares(importance: torch.Tensor, fractions: tuple[float, ...] = (0.01, 0.1)
               ) -> dict[str, float | None]:
    """Share of the total of ``importance`` (>= 0) carried by the top fraction of features.

    The top k is ceil(fraction * n_dict) features (at least one); None when the total is 0.
    """
    ordered = torch.sort(importance.double(), descending=True).values
    total = float(ordered.sum())
    out: dict[str, float | None] = {}
    for fraction in fractions:
        k = max(1, math.ceil(fraction * len(ordered) - 1e-9))
        out[f"top_{fraction * 100:g}pct"] = float(ordered[:k].sum()) / total if total else None
    return out


def cumulative_share(importance: torch.Tensor) -> torch.Tensor:
    """Share of the total carried by the top j features, j = 1..n_dict (a concentration curve)."""
    ordered = torch.sort(importance.double(), descending=True).values
    total = ordered.sum()
    return ordered.cumsum(0) / total if total > 0 else torch.zeros_like(ordered)


def features_for_share(importance: torch.Tensor, share: float) -> int:
    """How many features, largest first, carry ``share`` of the total (0 when the total is 0)."""
    curve = cumulative_share(importance)
    return int((curve < share - 1e-12).sum()) + 1 if len(curve) and float(curve[-1]) > 0 else 0
