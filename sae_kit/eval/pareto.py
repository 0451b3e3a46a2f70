"""The L0 vs CE-loss-increase plot (the paper's main figure) from several runs' eval results.

    sae-kit eval runs/a runs/b runs/c --plot pareto.png      # or .pdf, .svg
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.store.run_dir import RunDir

Point = tuple[float, float]

# The paper's three objectives first, so they keep the same colour and marker in every plot.
_ORDER = ["local", "e2e", "e2e+ds"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:gray"]


def pareto_series(results: list[dict[str, Any]]) -> dict[str, list[Point]]:
    """(L0, CE-loss increase) per SAE, one series per loss and architecture, sorted by L0.

    A series is a frontier only when its points differ in lambda alone: ReLU and TopK SAEs of
    one loss get a series each (labelled "loss (architecture)" when the runs use several), and
    when the runs hold SAEs at more than one hook point the series are split by hook point too.
    """
    hook_points = {name for result in results for name in result["saes"]}
    archs = [architecture_of(result) for result in results]
    series: dict[str, list[Point]] = defaultdict(list)
    for result, arch in zip(results, archs, strict=True):
        label = str(result.get("loss") or "?")
        if len(set(archs)) > 1:
            label = f"{label} ({arch or '?'})"
        for name, metrics in result["saes"].items():
            key = label if len(hook_points) == 1 else f"{label} @ {name}"
            series[key].append((float(metrics["l0"]), float(metrics["ce_loss_increase"])))

    def order(label: str) -> tuple[int, str]:
        loss = label.split(" ")[0]
        return (_ORDER.index(loss) if loss in _ORDER else len(_ORDER), label)

    return {label: sorted(series[label]) for label in sorted(series, key=order)}


def plot_pareto(results: list[dict[str, Any]], path: str | Path) -> dict[str, list[Point]]:
    """Draw the plot to ``path`` in the format its extension names (.png, .pdf, .svg, ...);
    returns the plotted series. L0 is on a log axis, as sweeps space lambda geometrically."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    series = pareto_series(results)
    fmt = plot_format(path)
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for index, (label, points) in enumerate(series.items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker=_MARKERS[index % len(_MARKERS)],
                color=_COLOURS[index % len(_COLOURS)], label=label)
    if all(x > 0 for points in series.values() for x, _ in points):
        ax.set_xscale("log")
    else:  # a dead SAE (L0 = 0) has no place on a log axis; keep it visible
        ax.set_xscale("symlog", linthresh=1.0)
    # Plain numbers (20, 50, 100) rather than 2x10^1: a sweep spans a decade or two, where
    # matplotlib's scientific minor labels run into each other. Minor ticks: 2s and 5s only.
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(_minor_tick_label))
    ax.set_xlabel("L0 (active dictionary elements per token, log scale)")
    ax.set_ylabel("CE loss increase (nats)")
    ax.set_title("Sparsity vs. performance on held-out tokens")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="loss")
    fig.tight_layout()
    try:
        fig.savefig(path, format=fmt)
    except OSError as exc:
        raise SaeKitError(f"cannot write the plot {str(path)!r} ({exc.strerror or exc}); "
                          "choose a writable path") from None
    finally:
        plt.close(fig)
    return series


def plot_format(path: str | Path) -> str:
    """The file format ``path``'s extension names; one line naming the choices if it names none.

    Called before any evaluation, so a misspelt name fails at once.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    ext = Path(path).suffix.lower().lstrip(".")
    supported = FigureCanvasBase.get_supported_filetypes()
    if ext not in supported:
        raise SaeKitError(f"cannot tell the plot format from {str(path)!r}; end the file name "
                          f"in one of: {', '.join('.' + e for e in sorted(supported))}")
    return ext


def architecture_of(result: dict[str, Any]) -> str | None:
    """A result's architecture: from eval.json, else from its run's config.json."""
    if result.get("architecture"):
        return str(result["architecture"])
    run = RunDir(result.get("run_dir") or ".")
    return run.read().config.architecture if run.is_run() else None


def _minor_tick_label(value: float, _position: int) -> str:
    """'20', '50', '200', ... on a log axis; the other minor ticks unlabelled."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""
