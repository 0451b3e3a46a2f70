"""The L0 vs CE-loss-increase plot (the paper's main figure) from several runs' eval results.

    sae-kit eval runs/a runs/b runs/c --plot pareto.png      # or .pdf, .svg
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.eval.seeds import Stat, group_replicates, standard_error, stat
from sae_kit.store.run_dir import RunDir

Point = tuple[float, float]

# The paper's three objectives first, so they keep the same colour and marker in every plot.
_ORDER = ["local", "e2e", "e2e+ds"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]  # 10 against 8 markers: 40 pairs


Key = tuple[str, str, str]
"""A series: (loss, architecture label, hook point); the last two empty when all runs agree."""


def pareto_series(results: list[dict[str, Any]]) -> dict[str, list[Point]]:
    """(L0, CE-loss increase) per SAE, one series per loss and architecture, sorted by L0.

    A series is a frontier only when its points differ in lambda alone, or in the options that
    set an architecture's sparsity (``SAE.sparsity_options``, TopK's k): ReLU and TopK SAEs of
    one loss get a series each, as do TopK SAEs with and without AuxK (labelled "loss
    (architecture options)" when the runs use several), and when the runs hold SAEs at more
    than one hook point the series are split by hook point too.
    """
    return {_label(key): points for key, points in _series(results).items()}


def _series(results: list[dict[str, Any]]) -> dict[Key, list[Point]]:
    return {key: [(x.mean, y.mean) for x, y in points]
            for key, points in _series_over_seeds(results).items()}


def _series_over_seeds(results: list[dict[str, Any]]) -> dict[Key, list[tuple[Stat, Stat]]]:
    """(L0, CE increase) per point, each a Stat over the seeds of its replicates."""
    hook_points = {name for result in results for name in result["saes"]}
    archs = dict(zip(map(id, results), architecture_labels(results, sparsity=False),
                     strict=True))
    several = len(set(archs.values())) > 1
    series: dict[Key, list[tuple[Stat, Stat]]] = defaultdict(list)
    for group in group_replicates(results):
        first = group[0]
        for name in first["saes"]:
            members = [r["saes"][name] for r in group if name in r["saes"]]
            key = (str(first.get("loss") or "?"), archs[id(first)] if several else "",
                   name if len(hook_points) > 1 else "")
            series[key].append((stat([float(m["l0"]) for m in members]),
                                stat([float(m["ce_loss_increase"]) for m in members])))

    def order(key: Key) -> tuple[int, Key]:
        return (_ORDER.index(key[0]) if key[0] in _ORDER else len(_ORDER), key)

    return {key: sorted(series[key], key=lambda p: (p[0].mean, p[1].mean))
            for key in sorted(series, key=order)}


def _label(key: Key, loss: bool = True) -> str:
    name, arch, hook_point = key
    label = name if loss else ""
    if arch:
        label = f"{label} ({arch})" if loss else arch
    return f"{label} @ {hook_point}" if hook_point else label


def plot_pareto(results: list[dict[str, Any]], path: str | Path) -> dict[str, list[Point]]:
    """Draw the plot to ``path`` in the format its extension names (.png, .pdf, .svg, ...);
    returns the plotted series. L0 is on a log axis, as sweeps space lambda geometrically.

    Runs of several architectures and several losses get one panel per loss (shared CE axis),
    each architecture the same colour and marker in every panel. Runs that differ only in
    their seed are one point, their mean, with error bars of 2 standard errors."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    over_seeds = _series_over_seeds(results)
    series = _series(results)
    fmt = plot_format(path)
    losses = list(dict.fromkeys(key[0] for key in series))
    archs = list(dict.fromkeys(key[1:] for key in series))
    panels = losses if len(losses) > 1 and len(archs) > 1 else [None]
    size = (6, 4.2) if len(panels) == 1 else (5.2 * len(panels), 5.6)
    fig, axes = plt.subplots(1, len(panels), figsize=size, dpi=120, sharey=True, squeeze=False)
    for ax, loss in zip(axes[0], panels, strict=True):
        for index, (key, points) in enumerate(series.items()):
            if loss is not None and key[0] != loss:
                continue
            style = archs.index(key[1:]) if loss is not None else index
            xs, ys = zip(*points, strict=True)
            ax.errorbar(xs, ys, xerr=_two_sigma(over_seeds[key], 0),
                        yerr=_two_sigma(over_seeds[key], 1), capsize=3,
                        marker=_MARKERS[style % len(_MARKERS)],
                        color=_COLOURS[style % len(_COLOURS)], label=_label(key, loss is None))
        _style_axes(ax, [p for key, pts in series.items() if loss in (None, key[0]) for p in pts])
        ax.set_title(f"loss: {loss}" if loss else "Sparsity vs. performance on held-out tokens")
    axes[0][0].set_ylabel("CE loss increase (nats)")
    if panels == [None]:
        axes[0][0].legend(title="loss")
        fig.tight_layout()
    else:  # one legend for all panels, below them: an architecture looks alike in each
        handles = {c.get_label(): c for ax in axes[0] for c in ax.containers}
        fig.legend(list(handles.values()), list(handles), title="architecture", loc="lower center",
                   ncol=min(4, len(handles)), fontsize="small")
        fig.tight_layout(rect=(0, 0.06 * math.ceil(len(handles) / 4) + 0.04, 1, 1))
    try:
        fig.savefig(path, format=fmt)
    except OSError as exc:
        raise SaeKitError(f"cannot write the plot {str(path)!r} ({exc.strerror or exc}); "
                          "choose a writable path") from None
    finally:
        plt.close(fig)
    return {_label(key): points for key, points in series.items()}


def _two_sigma(points: list[tuple[Stat, Stat]], axis: int) -> list[float] | None:
    """Error bars of 2 standard errors over seeds: bars of two points that do not overlap
    mark a difference beyond seed noise. None (no bars) when every point has one seed."""
    if all(p[axis].n < 2 for p in points):
        return None
    return [2 * standard_error(p[axis]) for p in points]


def _style_axes(ax: Any, points: list[Point]) -> None:
    from matplotlib.ticker import FuncFormatter

    if all(x > 0 for x, _ in points):
        ax.set_xscale("log")
    else:  # a dead SAE (L0 = 0) has no place on a log axis; keep it visible
        ax.set_xscale("symlog", linthresh=1.0)
    # Plain numbers (20, 50, 100) rather than 2x10^1: a sweep spans a decade or two, where
    # matplotlib's scientific minor labels run into each other. Minor ticks: 2s and 5s only.
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(_minor_tick_label))
    ax.set_xlabel("L0 (active dictionary elements per token, log scale)")
    ax.grid(True, which="both", alpha=0.3)


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
    return _architecture(result)[0]


def _architecture(result: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """A result's architecture and its options: from the result, else from its run's config."""
    if result.get("architecture"):
        return str(result["architecture"]), dict(result.get("architecture_options") or {})
    run = RunDir(result.get("run_dir") or ".")
    if not run.is_run():
        return None, {}
    config = run.read().config
    return config.architecture, dict(config.architecture_options)


def architecture_labels(results: list[dict[str, Any]], sparsity: bool = True) -> list[str]:
    """Each result's architecture with the options that tell it apart from the other results
    of that architecture, e.g. "topk k=32 auxk=true"; ``sparsity=False`` leaves out the
    options that set the sparsity (``SAE.sparsity_options``), so points of one frontier share
    a label."""
    archs = [_architecture(result) for result in results]
    labels = []
    for name, options in archs:
        others = [o for n, o in archs if n == name]
        keys = [k for k, v in options.items() if any(o.get(k) != v for o in others)]
        if not sparsity:
            keys = [k for k in keys if k not in _sparsity_options(name)]
        labels.append(" ".join([name or "?", *(f"{k}={_option(options[k])}" for k in keys)]))
    return labels


def _sparsity_options(architecture: str | None) -> tuple[str, ...]:
    from sae_kit import plugins

    try:
        return tuple(plugins.load("architectures", architecture or "").sparsity_options)
    except SaeKitError:  # not installed here: every option that varies splits the series
        return ()


def _option(value: Any) -> str:
    """As ``--arch-option key=value`` takes it: true/false, not Python's True/False."""
    return str(value).lower() if isinstance(value, bool) else f"{value}"


def _minor_tick_label(value: float, _position: int) -> str:
    """'20', '50', '200', ... on a log axis; the other minor ticks unlabelled."""
    if value <= 0:
        return ""
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""
