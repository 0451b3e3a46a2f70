"""`sae-kit importance`'s plot: how often each feature fires against how much it matters."""

from __future__ import annotations

from pathlib import Path

import torch

from sae_kit.eval.analysis.attribution import CONVENTIONS, METRICS

LABELS = {"kl": "KL", "ce": "CE", "spliced": "spliced", "with_error": "with error"}


def density_importance_plot(values: dict[str, torch.Tensor], title: str, path: Path) -> Path:
    """One panel per convention and metric: |attribution| per token against log10 density.

    Features that never fired are left out (no density to place them at); features ablated
    exactly are drawn again as crosses at their |exact| change. Zero values sit on the axis
    floor (the smallest positive value shown) so the log scale keeps them.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display; file output only
    import matplotlib.pyplot as plt

    alive = values["count"] > 0
    density = values["density"][alive].double().log10()
    exact_ids = values["exact_features"].long()
    fig, grid = plt.subplots(len(CONVENTIONS), len(METRICS), figsize=(9.0, 6.4), sharex=True,
                             squeeze=False)
    for row, convention in enumerate(CONVENTIONS):
        for col, metric in enumerate(METRICS):
            ax = grid[row][col]
            name = f"{convention}.{metric}"
            y = values[f"{name}.attribution_abs"][alive].double()
            exact = values[f"{name}.exact"].double().abs()
            positive = torch.cat([y[y > 0], exact[exact > 0]])
            floor = float(positive.min()) if len(positive) else 1e-12
            ax.scatter(density, y.clamp(min=floor), s=4, alpha=0.5, label="|attribution|")
            if len(exact_ids):
                ax.scatter(values["density"][exact_ids].double().log10(), exact.clamp(min=floor),
                           s=14, marker="x", color="C3", label="|exact ablation|")
            ax.set_yscale("log")
            ax.set_title(f"{LABELS[metric]}, {LABELS[convention]}", fontsize=9)
            if row == len(CONVENTIONS) - 1:
                ax.set_xlabel("log10 density (firing tokens / tokens)")
            if col == 0:
                ax.set_ylabel("per-token change (nats)")
    grid[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


CONCENTRATION_VIEWS = (("spliced", "kl"), ("spliced", "ce"), ("with_error", "ce"))
"""(convention, metric) panels of the concentration plot. With-error KL is left out: there the
unablated model is the original one, so its first-order KL attribution is ~0 by construction."""


def concentration_plot(curves: dict[str, dict[str, torch.Tensor]], path: Path) -> Path:
    """Cumulative share of |attribution| against the fraction of the dictionary (largest
    first, log scale), one panel per :data:`CONCENTRATION_VIEWS` entry and one curve per SAE.

    ``curves``: SAE label -> ``"CONVENTION.METRIC"`` -> :func:`.attribution.cumulative_share`.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display; file output only
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CONCENTRATION_VIEWS), figsize=(12, 3.8), squeeze=False)
    for ax, (convention, metric) in zip(axes[0], CONCENTRATION_VIEWS, strict=True):
        for label, by_view in curves.items():
            curve = by_view[f"{convention}.{metric}"].double()
            ax.plot(torch.arange(1, len(curve) + 1) / len(curve), curve, label=label)
        ax.set_xscale("log")
        ax.set_title(f"|{LABELS[metric]} attribution|, {LABELS[convention]}", fontsize=10)
        ax.set_xlabel("fraction of the dictionary (largest first)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cumulative share of the total")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
