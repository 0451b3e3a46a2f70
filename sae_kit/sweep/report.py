"""A sweep's results: Markdown tables and the Pareto plot.

When some points were trained with several seeds, ``results.md`` opens with one row per point
(mean ± std over its seeds, ``sae_kit.eval.seeds``), then lists every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sae_kit.eval.pareto import architecture_labels
from sae_kit.eval.seeds import Stat, group_replicates, replicate_name, stat, ties_with_best


def table(results: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, one row per SAE; λ is "–" where no SAE of the run has
    a penalty (TopK), and the architecture shows the options that vary (e.g. "topk k=32")."""
    lines = ["| run | loss | arch | λ | L0 | alive | CE loss increase | KL | explained variance "
             "| downstream MSE |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    evaluated = [r for r in results if "failed" not in r]
    labels = dict(zip(map(id, evaluated), architecture_labels(evaluated), strict=True))
    for r in results:
        if "failed" in r:  # stopped on a non-finite step: no SAE, no figures
            f = r["failed"]
            lines.append(f"| {Path(r['run_dir']).name} | {r['loss']} | {r['architecture']} | "
                         f"{_lambda(r)} | failed at step {f['step']}: non-finite "
                         f"{f['reason']} | | | | | |")
            continue
        for hook_point, m in r["saes"].items():
            name = Path(r["run_dir"]).name + ("" if len(r["saes"]) == 1 else f" @ {hook_point}")
            lines.append(
                f"| {name} | {r['loss']} | {labels[id(r)]} | {_lambda(r)} | {m['l0']:.1f} | "
                f"{m['alive']}/{m['n_dict']} | {m['ce_loss_increase']:.4f} | {m['kl']:.4f} | "
                f"{m['explained_variance']:.3f} | {m.get('downstream_mse', float('nan')):.4g} |"
            )
    if evaluated:
        first = evaluated[0]
        lines.append(f"\nClean CE loss {first['clean_ce_loss']:.4f} nats on "
                     f"{first['n_tokens']:,} held-out tokens.")
    return "\n".join(lines)


# (header, metric, format, higher is better; None: not compared)
_SEED_COLUMNS = [("L0", "l0", ".1f", None), ("alive", "alive", ".0f", None),
                 ("CE loss increase", "ce_loss_increase", ".4f", False), ("KL", "kl", ".4f", False),
                 ("explained variance", "explained_variance", ".3f", True)]
SEED_NOTE = ("mean ± sample std over seeds; **bold**: the best point of the column, ≈: not "
             "distinguishable from it at 2σ (|Δ| ≤ 2·sqrt(s²/n + s'²/n')); a point of one seed "
             "has no noise estimate and is not compared.")


def seed_table(results: list[dict[str, Any]]) -> str | None:
    """One row per point and hook point, mean ± std over its seeds; None when no point has
    more than one seed."""
    evaluated = [r for r in results if "failed" not in r]
    groups = group_replicates(evaluated)
    if all(len(group) < 2 for group in groups):
        return None
    labels = dict(zip(map(id, evaluated), architecture_labels(evaluated), strict=True))
    rows: list[tuple[list[str], dict[str, Stat]]] = []
    for group in groups:
        first = group[0]
        for hook_point in first["saes"]:
            members = [r["saes"][hook_point] for r in group if hook_point in r["saes"]]
            name = replicate_name([r["run_dir"] for r in group])
            name += "" if len(first["saes"]) == 1 else f" @ {hook_point}"
            stats = {key: stat([float(m[key]) for m in members]) for _, key, _, _ in _SEED_COLUMNS}
            rows.append(([name, str(first["loss"]), labels[id(first)], _lambda(first),
                          str(len(members))], stats))
    marks = {key: ties_with_best([stats[key] for _, stats in rows], better)
             for _, key, _, better in _SEED_COLUMNS if better is not None}
    lines = ["| point | loss | arch | λ | seeds | "
             + " | ".join(h for h, _, _, _ in _SEED_COLUMNS) + " |",
             "| --- | --- | --- | ---: | ---: |" + " ---: |" * len(_SEED_COLUMNS)]
    for i, (cells, stats) in enumerate(rows):
        shown = [_mark(format_stat(stats[key], spec), marks.get(key, [""] * len(rows))[i])
                 for _, key, spec, _ in _SEED_COLUMNS]
        lines.append("| " + " | ".join(cells + shown) + " |")
    return "\n".join(lines) + "\n\n" + SEED_NOTE


def format_stat(s: Stat, spec: str) -> str:
    """"mean ± std", or the mean alone for one seed."""
    return format(s.mean, spec) + (f" ± {format(s.std, spec)}" if s.n > 1 else "")


def _mark(text: str, mark: str) -> str:
    return f"**{text}**" if mark == "best" else f"{text} ≈" if mark == "tie" else text


def _lambda(result: dict[str, Any]) -> str:
    return "–" if result.get("sparsity_coeff") is None else f"{result['sparsity_coeff']:g}"


def full_table(results: list[dict[str, Any]]) -> str:
    """``results.md``: the points over seeds (when there are several seeds), then every run."""
    points = seed_table(results)
    if points is None:
        return table(results)
    return f"## Points (over seeds)\n\n{points}\n\n## Every run\n\n{table(results)}"


def write_report(results: list[dict[str, Any]], out: Path, plot: str) -> tuple[Path, Path]:
    """results.md and the plot (format from its extension) in ``out``; their paths."""
    from sae_kit.eval.pareto import plot_pareto

    text_path, plot_path = out / "results.md", out / plot
    text_path.write_text(full_table(results) + "\n")
    evaluated = [r for r in results if "failed" not in r]
    if evaluated:  # a point that stopped has no figures to plot
        plot_pareto(evaluated, plot_path)
    return text_path, plot_path
