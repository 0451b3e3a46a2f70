"""`sae-kit compare`'s PNG plots, and the 2-D embedding of decoder directions."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.geometry import max_cosine_within, unit_columns
from sae_kit.eval.analysis.source import AnalysisSource


def embed_2d(points: torch.Tensor, method: str = "auto", seed: int = 0) -> tuple[torch.Tensor, str]:
    """(n, d) points to (n, 2): UMAP (cosine metric) where umap-learn is installed, else PCA.

    Returns the embedding and the method used ("umap" or "pca").
    """
    if method not in ("auto", "umap", "pca"):
        raise SaeKitError(f"--embedding must be auto, umap or pca, got {method!r}")
    if method in ("auto", "umap") and len(points) > 3:
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise SaeKitError("--embedding umap needs umap-learn: pip install umap-learn "
                                  "(or use --embedding pca)") from None
        else:
            reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed)
            return torch.as_tensor(reducer.fit_transform(points.numpy())).float(), "umap"
    centred = points.double() - points.double().mean(0)
    if len(points) < 2:
        return torch.zeros(len(points), 2), "pca"
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ v[:2].T).float(), "pca"


def _figure(width: float = 6.4, height: float = 4.4, rows: int = 1) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; file output only
    import matplotlib.pyplot as plt

    return plt.subplots(rows, 1, figsize=(width, height), sharex=True)


def fit_to_contents(fig: Any, pad: float = 0.1) -> None:
    """Grow ``fig`` until everything drawn lies inside it, then lay it out again.

    ``tight_layout`` only moves the axes within the figure: labels longer than the figure can
    hold (default run names beside a small heatmap) stay cut off. Growing by what still sticks
    out (a few rounds: the layout moves as it grows) fits them.
    """
    import warnings

    with warnings.catch_warnings():  # "tight layout not applied": the growing below mends it
        warnings.simplefilter("ignore", UserWarning)
        _grow(fig, pad)


def _grow(fig: Any, pad: float) -> None:
    fig.tight_layout()
    for _ in range(4):
        fig.canvas.draw()
        tight = fig.get_tightbbox()  # inches
        width, height = fig.get_size_inches()
        over_x = max(0.0, -tight.x0) + max(0.0, tight.x1 - width)
        over_y = max(0.0, -tight.y0) + max(0.0, tight.y1 - height)
        if over_x <= 0.01 and over_y <= 0.01:
            return
        fig.set_size_inches(width + over_x + pad, height + over_y + pad)
        fig.tight_layout()


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fit_to_contents(fig)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def across_figure(labels: list[str], summary: dict[str, Any]) -> Any:
    """The matrix of mean max cosines (diagonal: within), every label readable in full."""
    matrix = torch.full((len(labels), len(labels)), float("nan"))
    for i, label in enumerate(labels):
        matrix[i, i] = summary["saes"][label]["within_max_cos_mean"]
    for pair in summary["pairs"]:
        i, j = labels.index(pair["a"]), labels.index(pair["b"])
        matrix[i, j], matrix[j, i] = pair["a_to_b_mean"], pair["b_to_a_mean"]
    fig, ax = _figure(2.5 + 0.8 * len(labels), 2 + 0.7 * len(labels))
    image = ax.imshow(matrix.numpy(), vmin=0, vmax=1, cmap="viridis")
    for i, j in itertools.product(range(len(labels)), repeat=2):
        v = float(matrix[i, j])
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("mean max cosine of row's elements to column's\n(diagonal: within)", fontsize=9)
    fig.colorbar(image)
    return fig


def write_plots(sources: Sequence[AnalysisSource], alive: Sequence[torch.Tensor],
                summary: dict[str, Any], out: Path, method: str = "auto") -> tuple[list[str], str]:
    """within.png, across.png, activations.png and embedding.png; returns names and the
    embedding method."""
    decoders = [unit_columns(s.sae.W_dec)[:, a] for s, a in zip(sources, alive, strict=True)]
    names = []
    fig, ax = _figure()
    for source, dec in zip(sources, decoders, strict=True):
        if dec.shape[1] > 1:
            ax.hist(max_cosine_within(dec).numpy(), bins=50, range=(0, 1), histtype="step",
                    label=source.label)
    ax.set(xlabel="max cosine similarity to another element of the same dictionary",
           ylabel="alive elements", title="Within each dictionary")
    ax.legend(fontsize=8)
    names.append(_save(fig, out / "within.png"))

    labels = [s.label for s in sources]
    names.append(_save(across_figure(labels, summary), out / "across.png"))

    fig, axes = _figure(6.4, 6, rows=2)
    for label in labels:
        per = summary["saes"][label]["activations"]["per_position"]
        axes[0].plot(per["l2_ratio"], label=label, lw=1)
        axes[1].plot(per["cosine"], label=label, lw=1)
    axes[0].set(ylabel="‖â‖ / ‖a‖", title="Reconstruction vs input, per position")
    axes[1].set(ylabel="cos(â, a)", xlabel="position in the window")
    axes[0].legend(fontsize=8)
    names.append(_save(fig, out / "activations.png"))

    points = torch.cat([d.T for d in decoders])
    coords, used = embed_2d(points, method)
    fig, ax = _figure()
    start = 0
    for label, dec in zip(labels, decoders, strict=True):
        xy = coords[start:start + dec.shape[1]]
        start += dec.shape[1]
        ax.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), s=3, alpha=0.5, label=label)
    ax.set_title(f"Alive decoder directions, {used.upper()}")
    ax.legend(fontsize=8, markerscale=4)
    names.append(_save(fig, out / "embedding.png"))
    return names, used
