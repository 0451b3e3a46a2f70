"""`sae-kit importance`: which features the model's output depends on, and how much.

    sae-kit importance runs/sae-kit-tiny-e2e-20261125-120000 --tokens 50000

Two streaming passes over held-out text per SAE (memory independent of the token count; one
batch's graph at a time): the first computes every feature's attribution (:mod:`.attribution`)
under both conventions, the second reruns only the windows where the chosen features fire, with
each one's code zeroed (exact ablation of the top N by attribution and M random others).
`sae-kit features --importance` runs the attribution on its own pass (:class:`AttributionPass`).
The values and summary: :mod:`.importance_values`; the files: :mod:`.importance_files`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
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
    window_metrics,
)
from sae_kit.eval.analysis.collect import (
    NO_WINDOW,
    TextChoice,
    describe_text,
    text_windows,
    window_batches,
)
from sae_kit.eval.analysis.context_effects import ContextEffects
from sae_kit.eval.analysis.source import AnalysisSource
from sae_kit.eval.analysis.stats import Contexts
from sae_kit.eval.settings import ImportanceSettings
from sae_kit.model.loading import LoadedModel
from sae_kit.model.splice import ModelRunner

Progress = Callable[[str, int], None]
"""(phase, tokens done in it)"""




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
    context: dict[str, torch.Tensor] | None = None
    """With the report's top contexts: ``CONVENTION.context_kl`` (top k, exact features,
    after + 1) and ``CONVENTION.context_kl_rest`` (top k, exact features)."""


class _Model:
    """The model around one SAE: clean passes, and passes from the SAE's position on."""

    def __init__(self, loaded: LoadedModel, source: AnalysisSource, device: torch.device):
        self.runner = ModelRunner(loaded.model, loaded.adapter)
        self.unembed = loaded.adapter.unembed(loaded.model)
        self.sae, self.hook_point, self.device = source.sae, source.hook_point, device
        self.site = source.hook_point.site
        self.dtype = next(loaded.model.parameters()).dtype

    def clean(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(activation at the SAE, codes, final hidden states) of the original model."""
        with torch.no_grad():
            run = self.runner.run(input_ids, capture=[self.site])
            x = run.acts[self.site].to(self.sae.W_enc.dtype)
            return x, self.sae.encode(x), run.final_hidden

    def forward(self, input_ids: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        h = h.to(self.dtype)
        if self.hook_point.on_residual:  # the layers before the SAE are skipped
            run = self.runner.run(input_ids, start=(self.site, h))
        else:  # inside a layer: h replaces that module's activation in a whole pass
            run = self.runner.run(input_ids, replace={self.site: lambda _: h})
        return run.final_hidden


def _batches(source: AnalysisSource, loaded: LoadedModel, choice: TextChoice,
             settings: ImportanceSettings, device: torch.device) -> Iterator[torch.Tensor]:
    windows, _ = text_windows(source.data_spec, choice, loaded.tokenizer, source.context,
                              settings.n_tokens)
    seen = 0
    for input_ids in window_batches(windows, settings.batch_size):
        seen += 1
        yield input_ids.to(device)
    if not seen:
        raise SaeKitError(NO_WINDOW)


class AttributionPass:
    """The attribution pass one batch at a time; `sae-kit features` feeds its own batches here.

    ``add`` returns the batch's codes, so a caller that also needs them (the feature statistics)
    shares the clean forward pass instead of running its own.
    """

    def __init__(self, model: _Model, n_dict: int) -> None:
        self.model = model
        self.sums = {c: AttributionSums(n_dict) for c in CONVENTIONS}
        self.count = torch.zeros(n_dict, dtype=torch.long)
        self.n_tokens = 0

    def add(self, input_ids: torch.Tensor) -> torch.Tensor:
        x, codes, clean_hidden = self.model.clean(input_ids)
        for convention in CONVENTIONS:
            attributions, metrics = code_attributions(
                self.model.sae, codes, x, convention, self.model.forward, input_ids,
                clean_hidden, self.model.unembed)
            self.sums[convention].add(attributions, metrics)
        self.count += (codes != 0).reshape(-1, codes.shape[-1]).sum(0).cpu()
        self.n_tokens += input_ids.numel()
        return codes


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
                rows_per_forward: int, on_batch: Progress | None,
                contexts: ContextEffects | None = None) -> dict[str, dict[str, torch.Tensor]]:
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
        if contexts is not None:
            contexts.add(model.sae, codes, x, model.forward, input_ids, clean_hidden,
                         model.unembed, rows_per_forward)
        n_tokens += input_ids.numel()
        if on_batch:
            on_batch("exact ablation", n_tokens)
    return exact


def check_exact_counts(settings: ImportanceSettings, source: AnalysisSource) -> None:
    n_dict = source.sae.n_dict
    for name, value in (("--exact-top", settings.exact_top),
                        ("--exact-random", settings.exact_random)):
        if not 0 <= value <= n_dict:
            raise SaeKitError(f"{name} must be 0 or more and at most the dictionary size "
                              f"({n_dict}) of the SAE at {source.hook_point.name}, got {value}")


def start_importance(source: AnalysisSource, loaded: LoadedModel,
                     device: torch.device) -> AttributionPass:
    return AttributionPass(_Model(loaded, source, device), source.sae.n_dict)


def finish_importance(attribution: AttributionPass, source: AnalysisSource,
                      loaded: LoadedModel, choice: TextChoice, settings: ImportanceSettings,
                      started: float, on_batch: Progress | None = None,
                      top: Contexts | None = None, after: int = 0) -> ImportanceData:
    """The exact-ablation pass after a finished attribution pass, and the results.

    With ``top`` (the report's top contexts, from the same windows in the same order) the pass
    also measures each chosen feature's per-context effect (:mod:`.context_effects`)."""
    model, s = attribution.model, settings
    features, is_top = choose_exact(attribution.sums[DEFAULT_CONVENTION].absolute["kl"],
                                    attribution.count, s.exact_top, s.exact_random, s.seed)
    exact = {c: {m: torch.zeros(0, dtype=torch.float64) for m in METRICS} for c in CONVENTIONS}
    effects = None
    if top is not None and len(features):
        effects = ContextEffects(top.where[:, features], features, source.context, after)
    if len(features):
        exact = _exact_pass(model, _batches(source, loaded, choice, s, model.device), features,
                            s.batch_size, on_batch, effects)
    meta = {"source": str(source.path), "label": source.label, "model": source.model,
            "hook_point": source.hook_point.name, "n_dict": source.sae.n_dict,
            "n_tokens": attribution.n_tokens, "context": source.context,
            "text": describe_text(source.data_spec, choice),
            "conventions": list(CONVENTIONS), "default_convention": DEFAULT_CONVENTION,
            "seconds": round(time.perf_counter() - started, 2), "settings": asdict(s)}
    context = None
    if effects is not None:
        context = {f"{c}.context_kl{part}": getattr(effects, name)[c] for c in CONVENTIONS
                   for part, name in (("", "near"), ("_rest", "rest"))}
    return ImportanceData(source, s, attribution.n_tokens, attribution.count,
                          attribution.sums, features, is_top, exact, meta, context)


def collect_importance(source: AnalysisSource, loaded: LoadedModel, choice: TextChoice,
                       settings: ImportanceSettings, device: torch.device,
                       on_batch: Progress | None = None) -> ImportanceData:
    """Both passes for one SAE (already checked to fit the model)."""
    check_exact_counts(settings, source)
    started = time.perf_counter()
    attribution = start_importance(source, loaded, device)
    for input_ids in _batches(source, loaded, choice, settings, device):
        attribution.add(input_ids)
        if on_batch:
            on_batch("attribution", attribution.n_tokens)
    return finish_importance(attribution, source, loaded, choice, settings, started, on_batch)
