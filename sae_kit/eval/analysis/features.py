"""The data of `sae-kit features`: one pass over text with one SAE, everything a feature
dashboard shows.

:func:`collect_features` gathers it (memory independent of the token count);
:func:`feature_records` and :func:`tensors` hand it to the view (:mod:`sae_kit.eval.report`),
which this module never imports; :mod:`sae_kit.eval.feature_report` composes the two.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.collect import (
    NO_WINDOW,
    TextChoice,
    activation_batches,
    describe_text,
    text_windows,
    window_batches,
)
from sae_kit.eval.analysis.directions import nearest_features, output_token_effects
from sae_kit.eval.analysis.importance import (
    AttributionPass,
    ImportanceData,
    ImportanceSettings,
    check_exact_counts,
    finish_importance,
    start_importance,
)
from sae_kit.eval.analysis.importance_values import feature_importance, per_feature
from sae_kit.eval.analysis.source import AnalysisSource
from sae_kit.eval.analysis.stats import (
    Contexts,
    Entries,
    FeatureStats,
    ReservoirContexts,
    TopContexts,
    quantile_groups,
)
from sae_kit.eval.analysis.tokens import token_table
from sae_kit.eval.settings import FeatureSettings
from sae_kit.model.loading import LoadedModel
from sae_kit.progress import Progress


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
    importance: ImportanceData | None = None
    """`--importance`: attribution from the same pass, exact ablation from a second."""


def _codes(source: AnalysisSource, loaded: LoadedModel, windows: Iterator[list[int]],
           settings: FeatureSettings, device: torch.device,
           attribution: AttributionPass | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, codes on the CPU) per batch; with ``attribution``, from its pass."""
    sae, site = source.sae, source.hook_point.site
    batches = window_batches(windows, settings.batch_size)
    if attribution is not None:
        seen = False
        for input_ids in batches:
            seen = True
            yield input_ids, attribution.add(input_ids.to(device)).cpu()
        if not seen:
            raise SaeKitError(NO_WINDOW)
        return
    with torch.no_grad():
        for input_ids, acts in activation_batches(loaded, [site], batches, device):
            yield input_ids, sae.encode(acts[site].to(sae.W_enc.dtype)).cpu()


def collect_features(source: AnalysisSource, loaded: LoadedModel, choice: TextChoice,
                     settings: FeatureSettings, device: torch.device,
                     progress: Progress | None = None,
                     importance: ImportanceSettings | None = None) -> FeatureData:
    """One pass for the dashboards; with ``importance``, the attribution rides on it (one
    clean forward per batch for both) and the exact ablation follows in a second pass.
    ``progress`` hears of the tokens read, then of the exact ablation's."""
    sae, n_dict, s = source.sae, source.sae.n_dict, settings
    stats = FeatureStats(n_dict)
    top = TopContexts(n_dict, s.top_k, s.before, s.after)
    sample = ReservoirContexts(n_dict, s.reservoir, s.before, s.after, seed=s.seed)
    attribution = None
    if importance is not None:
        check_exact_counts(importance, source)
        attribution = start_importance(source, loaded, device)
    started = time.perf_counter()
    windows, read = text_windows(source.data_spec, choice, loaded.tokenizer, source.context,
                                 s.n_tokens)
    for input_ids, codes in _codes(source, loaded, windows, s, device, attribution):
        entries = Entries.of(codes)  # once per batch, shared by the accumulators
        stats.add(codes, entries)
        top.add(codes, input_ids, entries)
        sample.add(codes, input_ids, entries)
        if progress:
            progress("reading text (tokens)", stats.n_tokens, read.budget)
    if progress and stats.n_tokens < read.budget:  # the text ran out first: the bar ends
        progress("reading text (tokens)", stats.n_tokens, stats.n_tokens)
    importance_data = None
    if attribution is not None:
        exact = None
        if progress:  # the exact ablation runs over the same tokens again
            def exact(phase: str, done: int) -> None:
                progress(f"importance: {phase} (tokens)", done, stats.n_tokens)
        importance_data = finish_importance(attribution, source, loaded, choice, importance,
                                            started, exact, top=top.best, after=s.after)
    with torch.no_grad():
        # A direction reads through the unembedding only where it lives in d_model (the
        # residual, attention and MLP outputs); a module path of another width has none.
        k = s.n_logits if sae.d_in == loaded.d_model else 0
        effects = output_token_effects(sae.W_dec, loaded.adapter.unembed(loaded.model),
                                       loaded.adapter.final_norm(loaded.model), k)
        neighbours = nearest_features(sae.W_dec, s.n_neighbours)
    ids = torch.cat([top.best.tokens.flatten(), sample.best.tokens.flatten(),
                     effects["top_ids"].flatten(), effects["bottom_ids"].flatten()])
    meta = {"source": str(source.path), "label": source.label, "model": source.model,
            "hook_point": source.hook_point.name, "n_dict": n_dict, "d_in": sae.d_in,
            "n_tokens": stats.n_tokens, "context": source.context,
            "text": describe_text(source.data_spec, choice), "text_part": _part(choice),
            **{k: v for k, v in read.as_dict().items() if k != "n_tokens"},
            "n_dead": int(stats.dead.sum()), "n_alive": int((~stats.dead).sum()),
            "seconds": round(time.perf_counter() - started, 2),
            "settings": asdict(settings)}
    return FeatureData(source, settings, stats, top.best, sample.best, effects, neighbours,
                       token_table(loaded.tokenizer, ids.tolist()), meta, importance_data)


def _part(choice: TextChoice) -> str | None:
    """"train"/"eval" for a part of the run's dataset, None for other text (--dataset)."""
    return None if choice.dataset else choice.part


def _significant(x: torch.Tensor, digits: int) -> torch.Tensor:
    """Rounded to ``digits`` significant digits, in float64 so the JSON stays short."""
    x = x.double()
    magnitude = torch.floor(torch.log10(x.abs().clamp(min=1e-30)))
    scale = 10.0 ** (digits - 1 - magnitude)
    return torch.round(x * scale) / scale


def _lists(contexts: Contexts) -> dict[str, list]:
    """Per feature (outer index), the contexts as Python lists: converted once, not per item."""
    return {"valid": contexts.valid.T.tolist(),
            "value": _significant(contexts.value.T, 5).tolist(),
            "tokens": contexts.tokens.permute(1, 0, 2).tolist(),
            "acts": _significant(contexts.acts.permute(1, 0, 2), 3).tolist()}


def _contexts(c: dict[str, list], feature: int, slots: list[int]) -> list[dict[str, Any]]:
    return [{"value": c["value"][feature][s], "tokens": c["tokens"][feature][s],
             "acts": c["acts"][feature][s]} for s in slots]


def _quantiles(data: FeatureData, sample: dict[str, list], feature: int) -> list[dict[str, Any]]:
    slots = [s for s, ok in enumerate(sample["valid"][feature]) if ok]
    values = [sample["value"][feature][s] for s in slots]
    groups = quantile_groups(values, data.settings.quantiles, data.settings.per_quantile)
    out = []
    for rank, group in zip(range(len(groups), 0, -1), groups, strict=False):
        picked = [values[i] for i in group]
        out.append({"quantile": rank, "of": data.settings.quantiles, "low": min(picked),
                    "high": max(picked),
                    "contexts": _contexts(sample, feature, [slots[i] for i in group])})
    return out


def _pairs(ids: torch.Tensor, values: torch.Tensor) -> list[list[list[float]]]:
    """(n, k) ids and values as [[id, value], ...] per row."""
    rounded = _significant(values, 4).tolist()
    return [[[i, v] for i, v in zip(row_i, row_v, strict=True)]
            for row_i, row_v in zip(ids.tolist(), rounded, strict=True)]


BLOCK = 512
"""Features converted to Python lists at a time: lists of numbers cost ~30x their tensors."""


def _block(contexts: Contexts, lo: int, hi: int) -> Contexts:
    return Contexts(*(getattr(contexts, f)[:, lo:hi] for f in ("score", "value", "tokens",
                                                               "acts", "where")))


def feature_records(data: FeatureData) -> Iterator[dict[str, Any]]:
    """Everything the dashboard shows, one JSON-ready dict per feature."""
    stats, effects = data.stats, data.effects
    values = per_feature(data.importance) if data.importance else None
    for lo in range(0, stats.n_dict, BLOCK):
        hi = min(lo + BLOCK, stats.n_dict)
        importance = feature_importance(values, lo, hi) if values else None
        top, sample = _lists(_block(data.top, lo, hi)), _lists(_block(data.sample, lo, hi))
        density, log10 = stats.density[lo:hi].tolist(), stats.log10_density[lo:hi].tolist()
        mean, maximum = stats.mean[lo:hi].tolist(), stats.max[lo:hi].tolist()
        dead, hist = stats.dead[lo:hi].tolist(), stats.hist[lo:hi].tolist()
        edges = _significant(stats.edges, 4).tolist()
        promoted = _pairs(effects["top_ids"][lo:hi], effects["top_values"][lo:hi])
        suppressed = _pairs(effects["bottom_ids"][lo:hi], effects["bottom_values"][lo:hi])
        neighbours = _pairs(data.neighbours[1][lo:hi], data.neighbours[0][lo:hi])
        for f in range(hi - lo):
            used = [b for b, count in enumerate(hist[f]) if count]
            first, last = (used[0], used[-1] + 1) if used else (0, 0)
            yield {
                "index": lo + f, "density": density[f], "mean": mean[f], "max": maximum[f],
                "log10_density": None if dead[f] else log10[f], "dead": dead[f],
                "top": _contexts(top, f, [s for s, ok in enumerate(top["valid"][f]) if ok]),
                "quantiles": _quantiles(data, sample, f),
                "histogram": {"edges": edges[first:last + 1], "counts": hist[f][first:last]},
                "promoted": promoted[f], "suppressed": suppressed[f],
                "neighbours": neighbours[f],
                **({"importance": importance[f]} if importance else {}),
            }


def tensors(data: FeatureData) -> dict[str, torch.Tensor]:
    """The data behind the report as named tensors (features.safetensors)."""
    out = {"density": data.stats.density, "mean": data.stats.mean, "max": data.stats.max,
           "count": data.stats.count, "hist_counts": data.stats.hist,
           "hist_edges": data.stats.edges, "neighbour_ids": data.neighbours[1],
           "neighbour_cosines": data.neighbours[0]}
    for name, contexts in (("top", data.top), ("sample", data.sample)):
        out.update({f"{name}_{field}": getattr(contexts, field)
                    for field in ("score", "value", "tokens", "acts", "where")})
    out.update({f"logit_{k}": v for k, v in data.effects.items()})
    # int32 ids and counts: half the file, and ids and counts fit.
    return {k: (v.int() if v.dtype == torch.long else v).contiguous() for k, v in out.items()}
