"""`sae-kit importance`'s values: per feature by documented name, the report's records and
columns, and the per-SAE summary. Pure data; :mod:`.importance_files` writes them.

Field names of ``importance.json`` and ``importance.safetensors`` are in docs/analysis.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sae_kit.eval.analysis.attribution import (
    CONVENTIONS,
    DEFAULT_CONVENTION,
    METRICS,
    spearman,
    top_shares,
)
from sae_kit.eval.analysis.importance import ImportanceData


def per_feature(data: ImportanceData) -> dict[str, torch.Tensor]:
    """Every per-feature value, by its documented name (importance.safetensors)."""
    n, firing = data.n_tokens, data.count.double().clamp(min=1)
    out = {"count": data.count.int(), "density": data.count.double() / n,
           "exact_features": data.exact_features.int(), "exact_is_top": data.exact_is_top}
    chosen_firing = firing[data.exact_features]
    for c in CONVENTIONS:
        for m in METRICS:
            signed, absolute = data.sums[c].signed[m], data.sums[c].absolute[m]
            out[f"{c}.{m}.attribution"] = signed / n
            out[f"{c}.{m}.attribution_abs"] = absolute / n
            out[f"{c}.{m}.attribution_firing"] = signed / firing
            out[f"{c}.{m}.exact"] = data.exact[c][m] / n
            out[f"{c}.{m}.exact_firing"] = data.exact[c][m] / chosen_firing
    out.update(data.context or {})
    return {k: v.contiguous() for k, v in out.items()}


def feature_importance(values: dict[str, torch.Tensor], lo: int, hi: int
                       ) -> list[dict[str, Any]]:
    """Features lo..hi-1's values as JSON-ready dicts (the report's panel and features.jsonl):
    ``{CONVENTION: {METRIC: {attribution, attribution_abs, attribution_firing, exact,
    exact_firing}}, "exact": "top" | "random" | None}``, 4 significant digits, exact None where
    not ablated."""
    slot = {int(f): i for i, f in enumerate(values["exact_features"].tolist())}
    is_top = values["exact_is_top"].tolist()
    names = ("attribution", "attribution_abs", "attribution_firing")
    columns = {(c, m, n): values[f"{c}.{m}.{n}"][lo:hi].tolist()
               for c in CONVENTIONS for m in METRICS for n in names}
    exact = {(c, m, n): values[f"{c}.{m}.{n}"].tolist()
             for c in CONVENTIONS for m in METRICS for n in ("exact", "exact_firing")}
    out = []
    for f in range(lo, hi):
        i = slot.get(f)
        record: dict[str, Any] = {"exact": None if i is None else
                                  ("top" if is_top[i] else "random")}
        for c in CONVENTIONS:
            record[c] = {m: {**{n: _round(columns[c, m, n][f - lo]) for n in names},
                             **{n: None if i is None else _round(exact[c, m, n][i])
                                for n in ("exact", "exact_firing")}} for m in METRICS}
        if i is not None and "spliced.context_kl" in values:
            record["contexts"] = _contexts(values, i)
        out.append(record)
    return out


def _contexts(values: dict[str, torch.Tensor], slot: int) -> list[dict[str, Any] | None]:
    """Per top-context slot of exact feature ``slot``: ΔKL at the centre and after it, and
    over the rest of the window, per convention (None for an empty slot)."""
    out: list[dict[str, Any] | None] = []
    rest = {c: values[f"{c}.context_kl_rest"][:, slot].tolist() for c in CONVENTIONS}
    near = {c: values[f"{c}.context_kl"][:, slot].tolist() for c in CONVENTIONS}
    for k in range(len(rest[DEFAULT_CONVENTION])):
        if math.isnan(rest[DEFAULT_CONVENTION][k]):
            out.append(None)
            continue
        out.append({c: {"near": [None if math.isnan(v) else _round(v) for v in near[c][k]],
                        "rest": _round(rest[c][k])} for c in CONVENTIONS})
    return out


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def summary(data: ImportanceData) -> dict[str, Any]:
    """Per convention and metric: whole-SAE value, concentration, rank agreement."""
    values, n = per_feature(data), data.n_tokens
    out: dict[str, Any] = {"clean_ce": data.sums[DEFAULT_CONVENTION].base["clean_ce"]
                           / _ce_positions(data)}
    for c in CONVENTIONS:
        out[c] = {}
        for m in METRICS:
            base = data.sums[c].base[m] / (n if m == "kl" else _ce_positions(data))
            attribution = values[f"{c}.{m}.attribution"]
            exact = values[f"{c}.{m}.exact"]
            out[c][m] = {
                "whole_sae": base,
                "share_of_abs_attribution": top_shares(values[f"{c}.{m}.attribution_abs"]),
                "spearman_attribution_vs_exact": spearman(
                    attribution[data.exact_features], exact),
                "sum_of_exact": float(exact.sum()),
            }
    return out


COLUMNS = {"importance_kl": ("spliced", "kl", "attribution_abs"),
           "attribution_kl": ("spliced", "kl", "attribution"),
           "attribution_ce_with_error": ("with_error", "ce", "attribution"),
           "exact_kl": ("spliced", "kl", "exact")}
"""The feature report index's importance columns (summary.json's feature rows): name ->
(convention, metric, value) of :func:`feature_importance`'s record."""


def importance_columns(record: dict[str, Any] | None) -> dict[str, float | None]:
    """One feature's index columns from its :func:`feature_importance` record (none without)."""
    if record is None:
        return {}
    return {name: record[c][m][v] for name, (c, m, v) in COLUMNS.items()}


def importance_summary(data: ImportanceData) -> dict[str, Any]:
    """What the report's header shows: :func:`summary` with the exactly ablated counts."""
    return {**summary(data), "n_exact_top": int(data.exact_is_top.sum()),
            "n_exact_random": int((~data.exact_is_top).sum()),
            "default_convention": DEFAULT_CONVENTION}


def _ce_positions(data: ImportanceData) -> int:
    """CE has no target at the last position of each window."""
    return data.n_tokens - data.n_tokens // data.source.context


def results_json(data: ImportanceData) -> dict[str, Any]:
    return {"meta": data.meta, "summary": summary(data)}
