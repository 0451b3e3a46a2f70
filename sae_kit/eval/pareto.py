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
from sae_kit.eval.seeds import Stat, group_replicates, standard_error, stat
from sae_kit.record.config import trained_settings
from sae_kit.record.run_record import RunRecord
from sae_kit.store.run_dir import RunDir

Point = tuple[float, float]
LabelledPoint = tuple[float, float, str]

# The paper's three objectives first, so they keep the same colour and marker in every plot.
_ORDER = ["local", "e2e", "e2e+ds"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]  # 10 against 8 markers: 40 pairs


Key = tuple[str, str, str, str]
"""A series: (loss, architecture label, the other settings that differ, hook point); the last
three empty when all runs agree on them."""

NOT_A_SERIES = ("loss", "architecture", "sparsity_coeff", "seed", "hook_points")
"""Trained settings that never go into a series' "other settings": the loss and architecture
have places of their own in the key, lambda moves a run along its frontier, runs that differ
in their seed alone are one point (their mean, :mod:`sae_kit.eval.seeds`), and the hook point
is the "@" suffix. Architecture options are told apart by :func:`architecture_labels`, which
knows which of them set the sparsity."""


def pareto_points(results: list[dict[str, Any]]) -> dict[str, list[LabelledPoint]]:
    """(L0, CE-loss increase, point label) per point, one series per frontier, sorted by L0.

    A series is a frontier: its runs differ in lambda alone, or in the options that set an
    architecture's sparsity (``SAE.sparsity_options``, TopK's k). Its label is the loss, then
    the architecture with the options that tell it apart when the runs use several (``topk
    auxk=true``), then every other trained setting that differs (``dict_ratio=32``,
    ``n_samples=800``; how a run went, such as its device, never counts), then the hook point
    when the runs hold SAEs at several. Runs that differ only in their seed are one point, the
    mean over the seeds. A point's label is its k (``k=32``) or lambda (``λ=0.5``), else its
    run's name.
    """
    return {_label(key): [(x.mean, y.mean, name) for x, y, name in points]
            for key, points in _series_over_seeds(results).items()}


def _series_over_seeds(results: list[dict[str, Any]]
                       ) -> dict[Key, list[tuple[Stat, Stat, str]]]:
    """(L0, CE increase, label) per point, each a Stat over the seeds of its replicates."""
    hook_points = {name for result in results for name in result["saes"]}
    archs = dict(zip(map(id, results), architecture_labels(results, sparsity=False),
                     strict=True))
    several = len(set(archs.values())) > 1
    others = dict(zip(map(id, results), _other_settings(results), strict=True))
    series: dict[Key, list[tuple[Stat, Stat, str]]] = defaultdict(list)
    for group in group_replicates(results):
        first = group[0]
        label = _point_label(first)
        for name in first["saes"]:
            members = [r["saes"][name] for r in group if name in r["saes"]]
            key = (str(first.get("loss") or "?"), archs[id(first)] if several else "",
                   others[id(first)], name if len(hook_points) > 1 else "")
            series[key].append((stat([float(m["l0"]) for m in members]),
                                stat([float(m["ce_loss_increase"]) for m in members]), label))

    def order(key: Key) -> tuple[int, Key]:
        return (_ORDER.index(key[0]) if key[0] in _ORDER else len(_ORDER), key)

    return {key: sorted(series[key], key=lambda p: (p[0].mean, p[1].mean))
            for key in sorted(series, key=order)}


def _label(key: Key, loss: bool = True) -> str:
    name, arch, others, hook_point = key
    label = name if loss else ""
    if arch:
        label = f"{label} ({arch})" if loss else arch
    if others:
        label = f"{label}, {others}" if label else others
    return f"{label} @ {hook_point}" if hook_point else label


def _other_settings(results: list[dict[str, Any]]) -> list[str]:
    """Per result, ``name=value`` of every trained setting that is not the same in all the
    results (left out: a setting some results do not record, and NOT_A_SERIES)."""
    settings = [_trained(_record(result)) for result in results]
    known = [k for k in dict.fromkeys(k for s in settings for k in s)
             if all(k in s for s in settings)]
    differ = sorted(k for k in known if len({repr(s[k]) for s in settings}) > 1)
    return [", ".join(f"{k}={_show(s[k])}" for k in differ) for s in settings]


def _record(result: dict[str, Any]) -> RunRecord | None:
    run = RunDir(result.get("run_dir") or ".")
    if not (result.get("run_dir") and run.is_run()):
        return None
    try:
        return run.read()
    except SaeKitError:  # an unreadable record: the result says only its loss and architecture
        return None


def _trained(record: RunRecord | None) -> dict[str, Any]:
    """What a run trained, from its record with the defaults it resolved filled in; an SAE
    evaluated on its own (no record) says nothing beyond its loss and architecture."""
    if record is None:
        return {}
    settings = record.config.to_dict()
    for name, value in dataclasses.asdict(record.resolved).items():  # a default filled in
        if name in settings and settings[name] is None:
            settings[name] = value
    return {k: v for k, v in trained_settings(settings).items()
            if k not in NOT_A_SERIES and not k.startswith("architecture_options.")}


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else _option(value)


def _point_label(result: dict[str, Any]) -> str:
    """``k=32`` (the options that set the architecture's sparsity), else ``λ=0.5``, else the
    run's name."""
    arch, options = _architecture(result)
    swept = [f"{k}={_option(options[k])}" for k in _sparsity_options(arch) if k in options]
    if swept:
        return " ".join(swept)
    lam = result.get("sparsity_coeff")
    if lam is None and (record := _record(result)) is not None:
        lam = record.config.sparsity_coeff
    return f"λ={_show(float(lam))}" if lam is not None else Path(result.get("run_dir") or "").name


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
    series = {key: [(x.mean, y.mean) for x, y, _ in points] for key, points in over_seeds.items()}
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
            colour = _COLOURS[style % len(_COLOURS)]
            xs, ys = zip(*points, strict=True)
            ax.errorbar(xs, ys, xerr=_two_sigma(over_seeds[key], 0),
                        yerr=_two_sigma(over_seeds[key], 1), capsize=3,
                        marker=_MARKERS[style % len(_MARKERS)], color=colour,
                        label=_label(key, loss is None))
            for (x, y), (_, _, name) in zip(points, over_seeds[key], strict=True):
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=colour)  # which k or lambda (or run) it is
        _style_axes(ax, [p for key, pts in series.items() if loss in (None, key[0]) for p in pts])
        ax.set_title(f"loss: {loss}" if loss else "Sparsity vs. performance on held-out tokens")
    axes[0][0].set_ylabel("CE loss increase (nats)")
    if panels == [None]:
        axes[0][0].legend(title="series (λ or k varies along each)", fontsize=8)
        fig.tight_layout()
    else:  # one legend for all panels, below them: an architecture looks alike in each
        handles = {c.get_label(): c for ax in axes[0] for c in ax.containers}
        fig.legend(list(handles.values()), list(handles), loc="lower center",
                   title="series (λ or k varies along each)", ncol=min(4, len(handles)),
                   fontsize="small")
        fig.tight_layout(rect=(0, 0.06 * math.ceil(len(handles) / 4) + 0.04, 1, 1))
    try:
        fig.savefig(path, format=fmt)
    except OSError as exc:
        raise SaeKitError(f"cannot write the plot {str(path)!r} ({exc.strerror or exc}); "
                          "choose a writable path") from None
    finally:
        plt.close(fig)
    return {_label(key): points for key, points in series.items()}


def _two_sigma(points: list[tuple[Stat, Stat, str]], axis: int) -> list[float] | None:
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
    ax.margins(x=0.08, y=0.08)  # room for the labels of the end points
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
