"""The L0 vs CE-loss-increase plot (the paper's main figure) from several runs' eval results.

    sae-kit eval runs/a runs/b runs/c --plot pareto.png      # or .pdf, .svg
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.record.config import trained_settings
from sae_kit.record.run_record import RunRecord
from sae_kit.store.run_dir import RunDir

Point = tuple[float, float]
LabelledPoint = tuple[float, float, str]

# The paper's three objectives first, so they keep the same colour and marker in every plot.
_ORDER = ["local", "e2e", "e2e+ds"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:gray"]


SWEPT = ("sparsity_coeff", "architecture_options.k")
"""What moves a run along a frontier: lambda, or k for the TopK family. Runs that differ in
anything else a run trained (seed, length, dictionary size, ...) are separate series."""


def pareto_points(results: list[dict[str, Any]]) -> dict[str, list[LabelledPoint]]:
    """(L0, CE-loss increase, point label) per SAE, one series per frontier, sorted by L0.

    A series holds runs that differ in lambda (or k) alone. Its label is the loss, then the
    architecture when the runs use several, then every other setting that tells the series
    apart (``seed=1``, ``dict_ratio=32``), then the hook point when runs hold several. A
    point's label is its lambda (``λ=0.5``) or k (``k=32``), else its run's name.
    """
    hook_points = {name for result in results for name in result["saes"]}
    records = [_record(result) for result in results]
    settings = [_trained(result, record) for result, record in zip(results, records, strict=True)]
    differ = _differing(settings)
    if all(len(result["saes"]) == 1 for result in results):
        differ = [k for k in differ if k != "hook_points"]  # the "@ hook point" suffix says it
    series: dict[str, list[LabelledPoint]] = defaultdict(list)
    for result, record, mine in zip(results, records, settings, strict=True):
        label = str(mine.get("loss") or "?")
        if "architecture" in differ:
            label = f"{label} ({mine.get('architecture') or '?'})"
        others = [f"{k}={_show(mine.get(k))}" for k in differ if k not in ("loss", "architecture")]
        label += f", {', '.join(others)}" if others else ""
        for name, metrics in result["saes"].items():
            key = label if len(hook_points) == 1 else f"{label} @ {name}"
            series[key].append((float(metrics["l0"]), float(metrics["ce_loss_increase"]),
                                _point_label(result, record)))

    def order(label: str) -> tuple[int, str]:
        loss = label.split(" ")[0].rstrip(",")
        return (_ORDER.index(loss) if loss in _ORDER else len(_ORDER), label)

    return {label: sorted(series[label]) for label in sorted(series, key=order)}


def pareto_series(results: list[dict[str, Any]]) -> dict[str, list[Point]]:
    """:func:`pareto_points` without the point labels."""
    return {label: [(x, y) for x, y, _ in points]
            for label, points in pareto_points(results).items()}


def _record(result: dict[str, Any]) -> RunRecord | None:
    run = RunDir(result.get("run_dir") or ".")
    return run.read() if run.is_run() else None


def _trained(result: dict[str, Any], record: RunRecord | None) -> dict[str, Any]:
    """What the result's run trained, less SWEPT: from its run record where it has one, else
    the loss and architecture eval.json names (an SAE evaluated on its own)."""
    if record is not None:
        settings = record.config.to_dict()
        for name, value in dataclasses.asdict(record.resolved).items():  # a default filled in
            if name in settings and settings[name] is None:
                settings[name] = value
        return {k: v for k, v in trained_settings(settings).items() if k not in SWEPT}
    return {"loss": result.get("loss"), "architecture": architecture_of(result)}


def _differing(settings: list[dict[str, Any]]) -> list[str]:
    """The settings whose values are not the same in every result, loss and architecture
    first; a setting some results do not record is left out."""
    known = [k for k in dict.fromkeys(k for s in settings for k in s)
             if all(k in s for s in settings)]
    differ = [k for k in known if len({repr(s[k]) for s in settings}) > 1]
    return sorted(differ, key=lambda k: (k != "loss", k != "architecture"))


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _point_label(result: dict[str, Any], record: RunRecord | None) -> str:
    if result.get("sparsity_coeff") is not None:
        return f"λ={_show(float(result['sparsity_coeff']))}"
    if record is not None and "k" in record.config.architecture_options:
        return f"k={record.config.architecture_options['k']}"
    return Path(result.get("run_dir") or "").name


def plot_pareto(results: list[dict[str, Any]], path: str | Path) -> dict[str, list[Point]]:
    """Draw the plot to ``path`` in the format its extension names (.png, .pdf, .svg, ...);
    returns the plotted series. L0 is on a log axis, as sweeps space lambda geometrically."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    labelled = pareto_points(results)
    series = pareto_series(results)
    fmt = plot_format(path)
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for index, (label, points) in enumerate(labelled.items()):
        xs, ys, _ = zip(*points, strict=True)
        colour = _COLOURS[index % len(_COLOURS)]
        ax.plot(xs, ys, marker=_MARKERS[index % len(_MARKERS)], color=colour, label=label)
        for x, y, name in points:  # which lambda (or k, or run) each point is
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=colour)
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
    ax.margins(x=0.08, y=0.08)  # room for the labels of the end points
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="series (λ or k varies along each)", fontsize=8)
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
