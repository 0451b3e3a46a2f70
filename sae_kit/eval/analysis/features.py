"""`sae-kit features`: one pass over text with one SAE, everything a feature dashboard shows.

    sae-kit features runs/sae-kit-tiny-e2e-20261125-120000 --tokens 50000 --out report/

The data are gathered by :func:`collect_features` (memory independent of the token count) and
written as a static HTML report by :mod:`sae_kit.eval.report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.collect import (
    TextChoice,
    choose_texts,
    residual_batches,
    window_batches,
)
from sae_kit.eval.analysis.directions import nearest_features, output_token_effects
from sae_kit.eval.analysis.source import AnalysisSource, open_source
from sae_kit.eval.analysis.stats import (
    Contexts,
    FeatureStats,
    ReservoirContexts,
    TopContexts,
    quantile_groups,
)
from sae_kit.eval.analysis.tokens import token_table
from sae_kit.model.loading import LoadedModel, load_model


@dataclass
class FeatureSettings:
    n_tokens: int = 50_000
    batch_size: int = 8
    top_k: int = 10
    """Top-activating contexts per feature."""
    quantiles: int = 4
    """Activation quantile groups sampled below the top."""
    per_quantile: int = 3
    reservoir: int = 32
    """Uniformly sampled firing tokens per feature, from which the quantile samples are drawn."""
    before: int = 12
    after: int = 4
    """Tokens shown before and after the one a context is centred on."""
    n_logits: int = 10
    n_neighbours: int = 8
    seed: int = 0


@dataclass
class FeatureData:
    source: AnalysisSource
    settings: FeatureSettings
    stats: FeatureStats
    top: Contexts
    sample: Contexts
    effects: dict[str, torch.Tensor]
    neighbours: tuple[torch.Tensor, torch.Tensor]
    tokens: dict[int, str]
    meta: dict[str, Any]


def check_fits(source: AnalysisSource, loaded: LoadedModel) -> None:
    source.hook_point.check(loaded.n_layers)
    if source.sae.d_in != loaded.d_model:
        raise SaeKitError(f"the SAE at {source.hook_point} takes width {source.sae.d_in}, but "
                          f"{source.model!r} has d_model {loaded.d_model}")


def collect_features(source: AnalysisSource, loaded: LoadedModel, choice: TextChoice,
                     settings: FeatureSettings, device: torch.device,
                     on_batch: Callable[[int], None] | None = None) -> FeatureData:
    sae, n_dict, s = source.sae, source.sae.n_dict, settings
    stats = FeatureStats(n_dict)
    top = TopContexts(n_dict, s.top_k, s.before, s.after)
    sample = ReservoirContexts(n_dict, s.reservoir, s.before, s.after, seed=s.seed)
    batches = window_batches(choose_texts(source.data_spec, choice), loaded.tokenizer,
                             source.context, s.n_tokens, s.batch_size)
    position = source.hook_point.position
    started = time.perf_counter()
    with torch.no_grad():
        for input_ids, acts in residual_batches(loaded, [position], batches, device):
            codes = sae.encode(acts[position].to(sae.W_enc.dtype))
            stats.add(codes)
            top.add(codes, input_ids)
            sample.add(codes, input_ids)
            if on_batch:
                on_batch(stats.n_tokens)
        effects = output_token_effects(sae.W_dec, loaded.adapter.unembed(loaded.model),
                                       loaded.adapter.final_norm(loaded.model), s.n_logits)
        neighbours = nearest_features(sae.W_dec, s.n_neighbours)
    ids = torch.cat([top.best.tokens.flatten(), sample.best.tokens.flatten(),
                     effects["top_ids"].flatten(), effects["bottom_ids"].flatten()])
    meta = {"source": str(source.path), "label": source.label, "model": source.model,
            "hook_point": source.hook_point.name, "n_dict": n_dict, "d_in": sae.d_in,
            "n_tokens": stats.n_tokens, "context": source.context,
            "text": (f"{choice.dataset} ({choice.split}, all of it)" if choice.dataset
                     else f"{source.data_spec.dataset} (held-out part)"),
            "n_dead": int(stats.dead.sum()), "seconds": round(time.perf_counter() - started, 2),
            "settings": asdict(settings)}
    return FeatureData(source, settings, stats, top.best, sample.best, effects, neighbours,
                       token_table(loaded.tokenizer, ids.tolist()), meta)


def _round(values: torch.Tensor, digits: int = 4) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values.tolist()]


def _context(contexts: Contexts, slot: int, feature: int) -> dict[str, Any]:
    return {"value": float(f"{float(contexts.value[slot, feature]):.4g}"),
            "tokens": contexts.tokens[slot, feature].tolist(),
            "acts": _round(contexts.acts[slot, feature], 3)}


def _quantiles(data: FeatureData, feature: int) -> list[dict[str, Any]]:
    valid = data.sample.valid[:, feature].nonzero().flatten()
    values = data.sample.value[valid, feature]
    groups = quantile_groups(values, data.settings.quantiles, data.settings.per_quantile)
    out = []
    for rank, group in zip(range(len(groups), 0, -1), groups, strict=False):
        slots = [int(valid[i]) for i in group]
        picked = values[group]
        out.append({"quantile": rank, "of": data.settings.quantiles,
                    "low": float(f"{float(picked.min()):.4g}"),
                    "high": float(f"{float(picked.max()):.4g}"),
                    "contexts": [_context(data.sample, s, feature) for s in slots]})
    return out


def feature_record(data: FeatureData, feature: int) -> dict[str, Any]:
    """Everything the dashboard shows for one feature, JSON-ready."""
    stats, effects = data.stats, data.effects
    hist = stats.hist[feature]
    used = hist.nonzero().flatten()
    lo, hi = (int(used.min()), int(used.max()) + 1) if len(used) else (0, 0)
    near_values, near_ids = data.neighbours
    return {
        "index": feature, "density": float(stats.density[feature]),
        "log10_density": None if stats.dead[feature] else float(stats.log10_density[feature]),
        "mean": float(stats.mean[feature]), "max": float(stats.max[feature]),
        "dead": bool(stats.dead[feature]),
        "top": [_context(data.top, s, feature)
                for s in data.top.valid[:, feature].nonzero().flatten().tolist()],
        "quantiles": _quantiles(data, feature),
        "histogram": {"edges": _round(stats.edges[lo:hi + 1]), "counts": hist[lo:hi].tolist()},
        "promoted": [[int(i), round(float(v), 4)] for i, v in
                     zip(effects["top_ids"][feature], effects["top_values"][feature], strict=True)],
        "suppressed": [[int(i), round(float(v), 4)] for i, v in
                       zip(effects["bottom_ids"][feature], effects["bottom_values"][feature],
                           strict=True)],
        "neighbours": [[int(j), round(float(c), 4)] for j, c in
                       zip(near_ids[feature], near_values[feature], strict=True)],
    }


def feature_records(data: FeatureData) -> Iterator[dict[str, Any]]:
    for feature in range(data.stats.n_dict):
        yield feature_record(data, feature)


def tensors(data: FeatureData) -> dict[str, torch.Tensor]:
    """The data behind the report as named tensors (features.safetensors)."""
    out = {"density": data.stats.density, "mean": data.stats.mean, "max": data.stats.max,
           "count": data.stats.count, "hist_counts": data.stats.hist,
           "hist_edges": data.stats.edges, "neighbour_ids": data.neighbours[1],
           "neighbour_cosines": data.neighbours[0]}
    for name, contexts in (("top", data.top), ("sample", data.sample)):
        out.update({f"{name}_{field}": getattr(contexts, field)
                    for field in ("score", "value", "tokens", "acts")})
    out.update({f"logit_{k}": v for k, v in data.effects.items()})
    return {k: v.contiguous() for k, v in out.items()}


def build_features(ref: str, out: Path, hook_point: str | None = None,
                   settings: FeatureSettings | None = None, choice: TextChoice | None = None,
                   device: str = "auto", on_batch: Callable[[int], None] | None = None,
                   ) -> tuple[Path, dict[str, Any]]:
    """Run the whole `sae-kit features` pipeline; returns the report's index.html and meta."""
    from sae_kit.eval.report.render import write_report
    from sae_kit.model.device import resolve_device

    settings = settings or FeatureSettings()
    if settings.n_tokens < 1:
        raise SaeKitError(f"--tokens must be positive, got {settings.n_tokens}")
    torch_device = resolve_device(device)
    source = open_source(ref, hook_point, torch_device)
    loaded = load_model(source.model, revision=source.revision, device=torch_device)
    check_fits(source, loaded)
    data = collect_features(source, loaded, choice or TextChoice(), settings, torch_device,
                            on_batch)
    return write_report(data, out), data.meta
