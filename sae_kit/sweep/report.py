"""A sweep's results: a Markdown table (one row per point) and the Pareto plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sae_kit.eval.pareto import architecture_labels


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


def _lambda(result: dict[str, Any]) -> str:
    return "–" if result.get("sparsity_coeff") is None else f"{result['sparsity_coeff']:g}"


def write_report(results: list[dict[str, Any]], out: Path, plot: str) -> tuple[Path, Path]:
    """results.md and the plot (format from its extension) in ``out``; their paths."""
    from sae_kit.eval.pareto import plot_pareto

    text_path, plot_path = out / "results.md", out / plot
    text_path.write_text(table(results) + "\n")
    evaluated = [r for r in results if "failed" not in r]
    if evaluated:  # a point that stopped has no figures to plot
        plot_pareto(evaluated, plot_path)
    return text_path, plot_path
