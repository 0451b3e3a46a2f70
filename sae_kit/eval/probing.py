"""Sparse probing: can k SAE latents classify what a linear probe on the activation can?

    sae-kit probe runs/gpt2-e2e --task 113_movie_sent --k 1,2,5     # the CLI calls probe_run()

As in Kantamneni et al. 2025 (arXiv 2502.16681): each prompt's activation is taken at its last
token; the prompts are split into train and test (stratified, seeded); on the train split the
latents are ranked by the absolute difference of their class means (codes divided by each
latent's mean non-zero value, so loud latents do not win by scale) and a logistic regression is
fitted on the top k; the baseline is the same regression on the raw activation. Scores are the
test ROC AUC and accuracy. Activations are raw Hugging Face ones at the SAE's hook point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.settings import PROBE

TEST_SHARE = 0.2
L2 = 1e-2
"""Ridge penalty on standardised features: enough to keep a separable task's weights finite."""


def split(labels: Sequence[int], test_share: float = TEST_SHARE, seed: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test indices, stratified by label; each class keeps one example per side."""
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels)
    train, test = [], []
    for label in (0, 1):
        idx = torch.nonzero(y == label).flatten()
        if len(idx) < 2:
            raise SaeKitError(f"class {label} has {len(idx)} example(s); a probe needs 2 or more "
                              "of each (raise --max-examples)")
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_share)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train), torch.cat(test)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = L2
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """A logistic regression (L-BFGS, float64, standardised inputs); returns its scorer."""
    x = x.double()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-8)
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    target = y.double()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss = loss + l2 * (w @ w) / 2
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_, b_ = w.detach(), b.detach()
    return lambda new: ((new.double() - mean) / std) @ w_ + b_


def roc_auc(scores: torch.Tensor, y: torch.Tensor) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    pos, neg = scores[y == 1].double(), scores[y == 0].double()
    greater = (pos[:, None] > neg[None, :]).double().mean()
    ties = (pos[:, None] == neg[None, :]).double().mean()
    return float(greater + ties / 2)


def probe_scores(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor) -> dict[str, float]:
    score = fit_logistic(train_x, train_y)
    test = score(test_x)
    return {"test_auc": roc_auc(test, test_y),
            "test_accuracy": float(((test > 0).long() == test_y).double().mean())}


def rank_latents(codes: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Latents by |difference of class means| of mean-normalised codes, largest first."""
    codes = codes.double()
    fired = (codes != 0).double().sum(0)
    scale = codes.sum(0) / fired.clamp(min=1)
    normalised = codes / (scale.abs() + 1e-6)
    diff = normalised[y == 1].mean(0) - normalised[y == 0].mean(0)
    return torch.argsort(diff.abs(), descending=True, stable=True)


def sparse_probes(train_codes: torch.Tensor, train_y: torch.Tensor, test_codes: torch.Tensor,
                  test_y: torch.Tensor, ks: Sequence[int] = PROBE.ks) -> dict[str, Any]:
    """A probe on the top-k latents for each k: its scores and the latents it read."""
    order = rank_latents(train_codes, train_y)
    found: dict[str, Any] = {}
    for k in ks:
        chosen = order[:k]
        found[str(k)] = {"latents": chosen.tolist(), **probe_scores(
            train_codes[:, chosen], train_y, test_codes[:, chosen], test_y)}
    return found


def check_ks(ks: Sequence[int], n_dict: int | None = None) -> None:
    bad = [k for k in ks if k < 1 or (n_dict is not None and k > n_dict)]
    if not ks or bad:
        limit = f" and at most the {n_dict} latents" if n_dict else ""
        raise SaeKitError(f"--k {','.join(map(str, ks)) or '(none)'}: each k must be 1 or "
                          f"more{limit}, e.g. --k 1,2,5")
