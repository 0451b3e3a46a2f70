"""`sae-kit compare --importance`: how concentrated each dictionary's importance is, side by side.

Every SAE's attribution (:class:`.importance.AttributionPass`: one forward and backward pass per
batch, one batch's graph at a time, so memory does not grow with the token count) on the same
held-out windows; per SAE and (convention, metric), the share of the summed |attribution|
carried by the top fraction of features, how many features carry half and 90% of it, and the
cumulative curve (importance.png, importance.safetensors). Exact ablation is
`sae-kit importance`'s job; this compares distributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sae_kit.eval.analysis.attribution import (
    CONVENTIONS,
    METRICS,
    cumulative_share,
    features_for_share,
    top_shares,
)
from sae_kit.eval.analysis.collect import TextChoice, text_windows, window_batches
from sae_kit.eval.analysis.importance import AttributionPass, start_importance
from sae_kit.eval.analysis.source import AnalysisSource
from sae_kit.model.loading import LoadedModel

FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Points of the cumulative curve kept in summary.json (the whole curve is in the plot)."""


def attribution_passes(sources: Sequence[AnalysisSource], loaded: LoadedModel,
                       choice: TextChoice, n_tokens: int, batch_size: int,
                       device: torch.device) -> list[AttributionPass]:
    """Every SAE's attribution over the same windows (as `sae-kit importance` computes it)."""
    first = sources[0]
    passes = [start_importance(s, loaded, device) for s in sources]
    windows, _ = text_windows(first.data_spec, choice, loaded.tokenizer, first.context, n_tokens)
    for input_ids in window_batches(windows, batch_size):
        for attribution in passes:
            attribution.add(input_ids.to(device))
    return passes


def concentration(attribution: AttributionPass) -> tuple[dict[str, Any],
                                                         dict[str, torch.Tensor]]:
    """(summary.json's ``importance`` entry of one SAE, its per-feature values by name)."""
    n = attribution.n_tokens
    entry: dict[str, Any] = {"n_tokens": n}
    values = {"count": attribution.count.int()}
    for convention in CONVENTIONS:
        entry[convention] = {}
        for metric in METRICS:
            importance = attribution.sums[convention].absolute[metric] / n
            values[f"{convention}.{metric}.attribution_abs"] = importance
            entry[convention][metric] = {
                "total_abs_attribution": float(importance.sum()),
                "share_of_abs_attribution": top_shares(importance, FRACTIONS),
                "features_for_50pct": features_for_share(importance, 0.5),
                "features_for_90pct": features_for_share(importance, 0.9),
            }
    return entry, values


def compare_importance(sources: Sequence[AnalysisSource], loaded: LoadedModel,
                       choice: TextChoice, n_tokens: int, batch_size: int, device: torch.device,
                       summary: dict[str, Any], out: Path) -> str:
    """Add each SAE's ``importance`` to ``summary["saes"]``, write importance.safetensors and
    importance.png into ``out``; returns the plot's name."""
    from sae_kit.eval.analysis.importance_plot import concentration_plot
    from sae_kit.store.files import save_tensors

    tensors: dict[str, torch.Tensor] = {}
    curves: dict[str, dict[str, torch.Tensor]] = {}
    for source, attribution in zip(sources, attribution_passes(
            sources, loaded, choice, n_tokens, batch_size, device), strict=True):
        entry, values = concentration(attribution)
        summary["saes"][source.label]["importance"] = entry
        tensors.update({f"{source.label}/{k}": v.contiguous() for k, v in values.items()})
        curves[source.label] = {k.removesuffix(".attribution_abs"): cumulative_share(v)
                                for k, v in values.items() if k.endswith(".attribution_abs")}
    save_tensors(tensors, out / "importance.safetensors")
    return concentration_plot(curves, out / "importance.png").name
