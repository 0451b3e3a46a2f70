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
