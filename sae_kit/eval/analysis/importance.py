"""`sae-kit importance`: which features the model's output depends on, and how much.

    sae-kit importance runs/sae-kit-tiny-e2e-20261125-120000 --tokens 50000

Two streaming passes over held-out text per SAE (memory independent of the token count; one
batch's graph at a time): the first computes every feature's attribution (:mod:`.attribution`)
under both conventions, the second reruns only the windows where the chosen features fire, with
each one's code zeroed (exact ablation of the top N by attribution and M random others). Results
go to ``importance.json`` (settings, whole-SAE metrics, summary, rank agreement) and
``importance.safetensors`` (per-feature values); field names are in docs/analysis.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.attribution import (
    CONVENTIONS,
    DEFAULT_CONVENTION,
    METRICS,
    AttributionSums,
    code_attributions,
    exact_ablation_deltas,
    model_input,
    spearman,
    top_shares,
    window_metrics,
)
from sae_kit.eval.analysis.collect import (
    NO_WINDOW,
    TextChoice,
    choose_texts,
    describe_text,
    window_batches,
)
from sae_kit.eval.analysis.source import AnalysisSource
from sae_kit.model.loading import LoadedModel
from sae_kit.model.splice import ModelRunner

Progress = Callable[[str, int], None]
"""(phase, tokens done in it)"""


@dataclass
class ImportanceSettings:
    n_tokens: int = 50_000
    batch_size: int = 8
    """Windows per forward pass, and (window, feature) pairs per exact-ablation forward."""
    exact_top: int = 32
    """Features with the largest |attribution| (KL, default convention) ablated exactly."""
    exact_random: int = 32
    """Other features that fire, drawn at random (seeded), ablated exactly."""
    seed: int = 0


@dataclass
class ImportanceData:
    source: AnalysisSource
    settings: ImportanceSettings
    n_tokens: int
    count: torch.Tensor
    """Firing tokens per feature."""
    sums: dict[str, AttributionSums]
    exact_features: torch.Tensor
    exact_is_top: torch.Tensor
    exact: dict[str, dict[str, torch.Tensor]]
    """convention -> metric -> summed change per exact feature."""
    meta: dict[str, Any]


class _Model:
    """The model around one SAE: clean passes, and passes from the SAE's position on."""

    def __init__(self, loaded: LoadedModel, source: AnalysisSource, device: torch.device):
        self.runner = ModelRunner(loaded.model, loaded.adapter)
        self.unembed = loaded.adapter.unembed(loaded.model)
        self.sae, self.position, self.device = source.sae, source.hook_point.position, device
        self.dtype = next(loaded.model.parameters()).dtype

    def clean(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(activation at the SAE, codes, final hidden states) of the original model."""
        with torch.no_grad():
            run = self.runner.run(input_ids, capture=[self.position])
            x = run.acts[self.position].to(self.sae.W_enc.dtype)
            return x, self.sae.encode(x), run.final_hidden

    def forward(self, input_ids: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        run = self.runner.run(input_ids, start=(self.position, h.to(self.dtype)))
        return run.final_hidden


def _batches(source: AnalysisSource, loaded: LoadedModel, choice: TextChoice,
             settings: ImportanceSettings, device: torch.device) -> Iterator[torch.Tensor]:
    texts = choose_texts(source.data_spec, choice)
    seen = 0
    for input_ids in window_batches(texts, loaded.tokenizer, source.context, settings.n_tokens,
                                    settings.batch_size):
        seen += 1
        yield input_ids.to(device)
    if not seen:
        raise SaeKitError(NO_WINDOW)


def _attribution_pass(model: _Model, batches: Iterator[torch.Tensor], n_dict: int,
                      on_batch: Progress | None) -> tuple[dict[str, AttributionSums],
                                                          torch.Tensor, int]:
    sums = {c: AttributionSums(n_dict) for c in CONVENTIONS}
    count, n_tokens = torch.zeros(n_dict, dtype=torch.long), 0
    for input_ids in batches:
        x, codes, clean_hidden = model.clean(input_ids)
        for convention in CONVENTIONS:
            attributions, metrics = code_attributions(
                model.sae, codes, x, convention, model.forward, input_ids, clean_hidden,
                model.unembed)
            sums[convention].add(attributions, metrics)
        count += (codes != 0).reshape(-1, n_dict).sum(0).cpu()
        n_tokens += input_ids.numel()
        if on_batch:
            on_batch("attribution", n_tokens)
    return sums, count, n_tokens


def choose_exact(importance: torch.Tensor, count: torch.Tensor, top: int, random: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``top`` features by ``importance`` and ``random`` others that fire (seeded).

    Returns (features, is_top). A feature that never fired has no effect to measure.
    """
    order = torch.argsort(importance, descending=True, stable=True)
    chosen = order[:top]
    rest = order[top:][count[order[top:]] > 0]
    generator = torch.Generator().manual_seed(seed)
    drawn = rest[torch.randperm(len(rest), generator=generator)[:random]]
    features = torch.cat([chosen, torch.sort(drawn).values])
    is_top = torch.arange(len(features)) < len(chosen)
    return features, is_top


def _exact_pass(model: _Model, batches: Iterator[torch.Tensor], features: torch.Tensor,
                rows_per_forward: int, on_batch: Progress | None
                ) -> dict[str, dict[str, torch.Tensor]]:
    exact = {c: {m: torch.zeros(len(features), dtype=torch.float64) for m in METRICS}
             for c in CONVENTIONS}
    on_device, n_tokens = features.to(model.device), 0
    for input_ids in batches:
        x, codes, clean_hidden = model.clean(input_ids)
        for convention in CONVENTIONS:
            with torch.no_grad():
                hidden = model.forward(input_ids, model_input(model.sae, codes, x, convention))
                base = window_metrics(hidden, clean_hidden, input_ids, model.unembed)
            deltas = exact_ablation_deltas(model.sae, codes, x, convention, model.forward,
                                           input_ids, clean_hidden, model.unembed, base,
                                           on_device, rows_per_forward)
            for m in METRICS:
                exact[convention][m] += deltas[m]
        n_tokens += input_ids.numel()
        if on_batch:
            on_batch("exact ablation", n_tokens)
    return exact


def collect_importance(source: AnalysisSource, loaded: LoadedModel, choice: TextChoice,
                       settings: ImportanceSettings, device: torch.device,
                       on_batch: Progress | None = None) -> ImportanceData:
    """Both passes for one SAE (already checked to fit the model)."""
    n_dict, s = source.sae.n_dict, settings
    for name, value in (("--exact-top", s.exact_top), ("--exact-random", s.exact_random)):
        if not 0 <= value <= n_dict:
            raise SaeKitError(f"{name} must be between 0 and the dictionary size ({n_dict}) "
                              f"of the SAE at {source.hook_point.name}, got {value}")
    model = _Model(loaded, source, device)
    started = time.perf_counter()
    sums, count, n_tokens = _attribution_pass(
        model, _batches(source, loaded, choice, s, device), n_dict, on_batch)
    features, is_top = choose_exact(sums[DEFAULT_CONVENTION].absolute["kl"], count,
                                    s.exact_top, s.exact_random, s.seed)
    exact = {c: {m: torch.zeros(0, dtype=torch.float64) for m in METRICS} for c in CONVENTIONS}
    if len(features):
        exact = _exact_pass(model, _batches(source, loaded, choice, s, device), features,
                            s.batch_size, on_batch)
    meta = {"source": str(source.path), "label": source.label, "model": source.model,
            "hook_point": source.hook_point.name, "n_dict": n_dict, "n_tokens": n_tokens,
            "context": source.context,
            "text": describe_text(source.data_spec, choice),
            "conventions": list(CONVENTIONS), "default_convention": DEFAULT_CONVENTION,
            "seconds": round(time.perf_counter() - started, 2), "settings": asdict(s)}
    return ImportanceData(source, s, n_tokens, count, sums, features, is_top, exact, meta)


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
    return {k: v.contiguous() for k, v in out.items()}


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


def _ce_positions(data: ImportanceData) -> int:
    """CE has no target at the last position of each window."""
    return data.n_tokens - data.n_tokens // data.source.context


def results_json(data: ImportanceData) -> dict[str, Any]:
    return {"meta": data.meta, "summary": summary(data)}


def write_importance(data: ImportanceData, out: Path) -> Path:
    """importance.json, importance.safetensors and density_importance.png in ``out``; returns
    the JSON's path."""
    from sae_kit.eval.analysis.importance_plot import density_importance_plot
    from sae_kit.store.files import save_tensors
    from sae_kit.store.jsonio import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    values = per_feature(data)
    save_tensors(values, out / "importance.safetensors")
    density_importance_plot(values, f"{data.source.label} {data.source.hook_point.name}",
                            out / "density_importance.png")
    path = out / "importance.json"
    write_json_atomic(path, results_json(data))
    return path


def expected_batches(settings: ImportanceSettings, context: int) -> int:
    return math.ceil(math.ceil(settings.n_tokens / context) / settings.batch_size)


def open_sources(ref: str, hook_point: str | None, device: torch.device) -> list[AnalysisSource]:
    """Every SAE of a run (or the one at ``hook_point``), or the one SAE of an SAE directory."""
    from sae_kit.eval.analysis.source import open_source
    from sae_kit.store.sae_dir import sae_dirs
    from sae_kit.store.sources import is_sae_dir, resolve_sae_source

    path = resolve_sae_source(ref)
    if hook_point is not None or not path.is_dir() or is_sae_dir(path):
        return [open_source(ref, hook_point, device)]
    return [open_source(ref, hp.name, device) for hp in sae_dirs(path)]


def build_importance(ref: str, out: Path | None = None, hook_point: str | None = None,
                     settings: ImportanceSettings | None = None,
                     choice: TextChoice | None = None, device: str = "auto",
                     on_batch: Callable[[AnalysisSource, str, int], None] | None = None,
                     ) -> list[tuple[Path, ImportanceData]]:
    """The whole `sae-kit importance` pipeline; one output directory per SAE.

    Each SAE's files go to ``OUT/importance-HOOK_POINT/`` (OUT defaults to the run directory,
    or the SAE directory given).
    """
    from sae_kit.model.device import resolve_device
    from sae_kit.model.loading import load_model

    settings = settings or ImportanceSettings()
    if settings.n_tokens < 1 or settings.batch_size < 1:
        raise SaeKitError(f"--tokens and --batch-size must be positive, got "
                          f"{settings.n_tokens} and {settings.batch_size}")
    torch_device = resolve_device(device)
    sources = open_sources(ref, hook_point, torch_device)
    for source in sources:  # every bad --exact-* before any pass
        for value in (settings.exact_top, settings.exact_random):
            if value > source.sae.n_dict:
                raise SaeKitError(f"--exact-top and --exact-random must be at most the "
                                  f"dictionary size ({source.sae.n_dict}) of the SAE at "
                                  f"{source.hook_point.name}, got {value}")
    loaded = load_model(sources[0].model, revision=sources[0].revision, device=torch_device)
    written = []
    for source in sources:
        loaded.check_fits(source.hook_point, source.sae.d_in)
        progress = (lambda phase, n, s=source: on_batch(s, phase, n)) if on_batch else None
        data = collect_importance(source, loaded, choice or TextChoice(), settings,
                                  torch_device, progress)
        target = (out or source.path) / f"importance-{source.hook_point.name}"
        written.append((write_importance(data, target), data))
    return written
