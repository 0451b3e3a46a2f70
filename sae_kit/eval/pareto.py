"""The L0 vs CE-loss-increase plot (the paper's main figure) from several runs' eval results.

    sae-kit eval runs/a runs/b runs/c --plot pareto.png
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError

Point = tuple[float, float]

# The paper's three objectives first, so they keep the same colour and marker in every plot.
_ORDER = ["local", "e2e", "e2e+ds"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:gray"]


def pareto_series(results: list[dict[str, Any]]) -> dict[str, list[Point]]:
    """(L0, CE-loss increase) per SAE, grouped into one series per loss, sorted by L0.

    When the runs hold SAEs at more than one hook point, the series are per loss and hook point,
    since points from different layers do not lie on one curve.
    """
    hook_points = {name for result in results for name in result["saes"]}
    series: dict[str, list[Point]] = defaultdict(list)
    for result in results:
        loss = str(result.get("loss") or "?")
        for name, metrics in result["saes"].items():
            label = loss if len(hook_points) == 1 else f"{loss} @ {name}"
            series[label].append((float(metrics["l0"]), float(metrics["ce_loss_increase"])))

    def order(label: str) -> tuple[int, str]:
        loss = label.split(" @ ")[0]
        return (_ORDER.index(loss) if loss in _ORDER else len(_ORDER), label)

    return {label: sorted(series[label]) for label in sorted(series, key=order)}


def plot_pareto(results: list[dict[str, Any]], path: str | Path) -> dict[str, list[Point]]:
    """Draw the plot to ``path`` (PNG with the Agg backend); returns the plotted series."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    series = pareto_series(results)
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for index, (label, points) in enumerate(series.items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker=_MARKERS[index % len(_MARKERS)],
                color=_COLOURS[index % len(_COLOURS)], label=label)
    ax.set_xlabel("L0 (active dictionary elements per token)")
    ax.set_ylabel("CE loss increase (nats)")
    ax.set_title("Sparsity vs. performance on held-out tokens")
    ax.grid(True, alpha=0.3)
    ax.legend(title="loss")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise SaeKitError(f"cannot write the plot {str(path)!r} ({exc.strerror or exc}); "
                          "choose a writable path") from None
    finally:
        plt.close(fig)
    return series
