"""`sae-kit compare`: the geometry of several dictionaries at one hook point (Braun et al. 3.3).

    sae-kit compare runs/local-seed0 runs/e2e-seed0 runs/e2e-seed1 --out compare/

Alive elements are those that fire on at least one token of the text `sae-kit eval` counts them
on (the training part from its start, ``alive_tokens`` of it: :mod:`sae_kit.eval.alive`), or of
``--dataset``'s text where one is named; every geometry statistic below is over alive elements
only. L0, ‖â‖/‖a‖ and cos(â, a) are measured on held-out tokens (or ``--dataset``'s).
Writes summary.json, maxcos.safetensors (the per-element values) and PNG plots.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.alive import AliveCounter
from sae_kit.eval.analysis.collect import (
    ALIVE_TEXT,
    TextChoice,
    TextRead,
    activation_batches,
    describe_text,
    text_windows,
    window_batches,
)
from sae_kit.eval.analysis.directions import initial_decoder
from sae_kit.eval.analysis.geometry import (
    ActivationSums,
    max_cosine_across,
    max_cosine_within,
    permutation_test,
    random_dictionary,
    same_index_cosine,
)
from sae_kit.eval.analysis.source import AnalysisSource, open_source
from sae_kit.eval.metrics import TokenMean, l0
from sae_kit.eval.settings import COMPARE, EVAL
from sae_kit.model.loading import LoadedModel, load_model
from sae_kit.progress import Progress, ProgressLines
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.store.staging import staged_dir


def _labels(sources: Sequence[AnalysisSource]) -> list[str]:
    labels = [s.label for s in sources]
    return [f"{label}#{i}" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]


def open_sources(refs: Sequence[str], hook_point: str | None,
                 device: torch.device) -> list[AnalysisSource]:
    if len(refs) < 1:
        raise SaeKitError("name at least one run or SAE directory to compare")
    sources = [open_source(ref, hook_point, device) for ref in refs]
    points = {s.hook_point for s in sources}
    models = {(s.model, s.sae.d_in) for s in sources}
    if len(points) > 1:
        names = ", ".join(sorted(map(str, points)))
        raise SaeKitError(f"the SAEs sit at different hook points ({names}); choose one with "
                          "--hook-point")
    if len(models) > 1:
        raise SaeKitError(f"the SAEs belong to different models or widths ({sorted(models)}); "
                          "compare dictionaries of one model")
    for source, label in zip(sources, _labels(sources), strict=True):
        source.label = label
    return sources


def _site_activations(sources: Sequence[AnalysisSource], loaded: LoadedModel,
                      choice: TextChoice, n_tokens: int, batch_size: int, device: torch.device,
                      progress: Progress | None) -> tuple[Iterator[torch.Tensor], TextRead]:
    """The activations at the sources' (shared) hook point over ``n_tokens`` of ``choice``, a
    batch at a time with progress, and the TextRead they fill in."""
    first = sources[0]
    position = first.hook_point.site
    windows, read = text_windows(first.data_spec, choice, loaded.tokenizer, first.context,
                                 n_tokens)

    def batches() -> Iterator[torch.Tensor]:
        n = 0
        for _, acts in activation_batches(loaded, [position], window_batches(windows, batch_size),
                                          device):
            x = acts[position]
            yield x
            n += x.shape[0] * x.shape[1]
            if progress:
                progress(f"reading {_part_name(choice)} (tokens)", n, read.budget)
    return batches(), read


def activation_pass(sources: Sequence[AnalysisSource], loaded: LoadedModel, choice: TextChoice,
                    n_tokens: int, batch_size: int, device: torch.device,
                    progress: Progress | None = None,
                    ) -> tuple[list[torch.Tensor], list[dict[str, Any]], TextRead]:
    """Run every SAE on the same activations of ``choice``: the elements that fired on them,
    activation statistics, and how much text was read."""
    counter = AliveCounter()
    sums = [ActivationSums() for _ in sources]
    l0s = [TokenMean() for _ in sources]
    batches, read = _site_activations(sources, loaded, choice, n_tokens, batch_size, device,
                                      progress)
    n = 0
    with torch.no_grad():
        for x in batches:
            n += x.shape[0] * x.shape[1]
            for i, source in enumerate(sources):
                out = source.sae(x.to(source.sae.W_enc.dtype))
                counter.add(i, out.codes)
                l0s[i].add(l0(out.codes), x.shape[0] * x.shape[1])
                sums[i].add(x, out.output)
    stats = [{"n_tokens": n, "l0": m.value, **s.summary(), "per_position": s.per_position()}
             for s, m in zip(sums, l0s, strict=True)]
    return [counter.masks[i] for i in range(len(sources))], stats, read


def alive_pass(sources: Sequence[AnalysisSource], loaded: LoadedModel, choice: TextChoice,
               n_tokens: int, batch_size: int, device: torch.device,
               progress: Progress | None = None) -> tuple[list[torch.Tensor], TextRead]:
    """The elements of every SAE that fired on ``choice``'s tokens, by their encoders alone (as
    :func:`sae_kit.eval.alive.count_alive` counts them), and how much text was read."""
    counter = AliveCounter()
    batches, read = _site_activations(sources, loaded, choice, n_tokens, batch_size, device,
                                      progress)
    with torch.no_grad():
        for x in batches:
            for i, source in enumerate(sources):
                counter.add(i, source.sae.encode(x.to(source.sae.W_enc.dtype)))
    return [counter.masks[i] for i in range(len(sources))], read


def _part_name(choice: TextChoice) -> str:
    if choice.dataset:
        return "text"
    return "training part" if choice.part == "train" else "held-out part"


def _text_entry(source: AnalysisSource, choice: TextChoice, read: TextRead) -> dict[str, Any]:
    """summary.json's record of one text a pass read."""
    return {"text": describe_text(source.data_spec, choice),
            "part": None if choice.dataset else choice.part, **read.as_dict()}


def _mean(x: torch.Tensor) -> float:
    return float(x.double().mean()) if len(x) else float("nan")


def geometry(sources: Sequence[AnalysisSource], alive: Sequence[torch.Tensor],
             n_permutations: int = 2000) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Within, across, to-initialisation and random-baseline max cosines over alive elements."""
    decoders = [s.sae.W_dec.detach().float().cpu()[:, a] for s, a in zip(sources, alive,
                                                                          strict=True)]
    values: dict[str, torch.Tensor] = {}
    per_sae: dict[str, Any] = {}
    for source, mask, dec in zip(sources, alive, decoders, strict=True):
        within = max_cosine_within(dec) if dec.shape[1] > 1 else torch.empty(0)
        values[f"within/{source.label}"] = within
        entry: dict[str, Any] = {
            "within_max_cos_mean": _mean(within), "n_alive": int(mask.sum()),
            "n_dict": source.sae.n_dict,
            "random_max_cos_mean": _mean(max_cosine_across(
                dec, random_dictionary(dec.shape[0], dec.shape[1]))) if dec.shape[1] else None,
        }
        run = source.run
        init = initial_decoder(source.sae_config, run.config if run else None,
                               source.hook_point, run.resolved.widths if run else None)
        if init is not None and init.shape == source.sae.W_dec.shape:
            entry["init_same_index_cos_mean"] = _mean(same_index_cosine(dec, init[:, mask]))
            to_init = max_cosine_across(dec, init)
            entry["init_max_cos_mean"] = _mean(to_init)
            values[f"init/{source.label}"] = to_init
        else:
            entry["init_max_cos_mean"] = None  # no run config with a seed: unknown
        per_sae[source.label] = entry
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(sources), 2):
        ab = max_cosine_across(decoders[i], decoders[j])
        ba = max_cosine_across(decoders[j], decoders[i])
        values[f"across/{a.label}->{b.label}"] = ab
        values[f"across/{b.label}->{a.label}"] = ba
        pairs.append({
            "a": a.label, "b": b.label, "a_to_b_mean": _mean(ab), "b_to_a_mean": _mean(ba),
            "p_a_to_b_vs_b_to_a": permutation_test(ab, ba, n_permutations),
            "p_within_a_vs_within_b": permutation_test(
                values[f"within/{a.label}"], values[f"within/{b.label}"], n_permutations),
        })
    return {"saes": per_sae, "pairs": pairs}, values


def compare_sources(refs: Sequence[str], hook_point: str | None, out: Path,
                    n_tokens: int = COMPARE.n_tokens, batch_size: int = COMPARE.batch_size,
                    device: str = "auto",
                    choice: TextChoice | None = None, embedding: str = "auto",
                    progress: Progress | None = None,
                    importance: bool = False,
                    alive_tokens: int = EVAL.alive_tokens) -> dict[str, Any]:
    """The whole `sae-kit compare` pipeline; writes into ``out`` and returns the summary.
    Alive elements are counted on the first ``alive_tokens`` of the training part, as
    `sae-kit eval` counts them, unless ``choice`` names other text (then on that text); the
    activation statistics are on ``n_tokens`` of ``choice`` (default: the held-out part).
    ``progress`` (sae_kit.progress; default: log lines) hears of the tokens read, then of the
    geometry, the plots and the files. With ``importance``, also every SAE's attribution
    distribution (:mod:`.compare_importance`)."""
    from sae_kit.eval.analysis.plots import write_plots
    from sae_kit.model.device import resolve_device
    from sae_kit.store.files import save_tensors

    progress = progress or ProgressLines()
    # Built beside `out` and moved in once whole (summary.json last): a full disk leaves no
    # half comparison, and an unwritable --out fails here, before the model loads.
    with staged_dir(Path(out), "comparison", last="summary.json") as tmp:
        torch_device = resolve_device(device)
        sources = open_sources(refs, hook_point, torch_device)
        loaded = load_model(sources[0].model, revision=sources[0].revision,
                            device=torch_device)
        for source in sources:
            loaded.check_fits(source.hook_point, source.sae.d_in)
        choice = choice or TextChoice()
        fired_here, activation, read = activation_pass(sources, loaded, choice, n_tokens,
                                                       batch_size, torch_device, progress)
        texts = {"activations": _text_entry(sources[0], choice, read)}
        if choice.dataset:  # the user's text: alive on it too
            alive, texts["alive"] = fired_here, texts["activations"]
        else:
            alive, alive_read = alive_pass(sources, loaded, ALIVE_TEXT, alive_tokens,
                                           batch_size, torch_device, progress)
            texts["alive"] = _text_entry(sources[0], ALIVE_TEXT, alive_read)
        steps = 4 if importance else 3  # geometry, plots, (importance,) files
        progress("comparing (steps)", 0, steps)
        summary, values = geometry(sources, alive)
        progress("comparing (steps)", 1, steps)
        for source, stats in zip(sources, activation, strict=True):
            summary["saes"][source.label].update(
                {"source": str(source.path), "loss": source.sae_config.get("loss"),
                 "sparsity_coeff": source.sae_config.get("sparsity_coeff"),
                 "activations": stats})
        summary["texts"] = texts
        summary["hook_point"] = sources[0].hook_point.name
        summary["model"] = sources[0].model
        summary["plots"], summary["embedding_method"] = write_plots(
            sources, alive, summary, tmp, embedding)
        progress("comparing (steps)", 2, steps)
        if importance:
            from sae_kit.eval.analysis.compare_importance import compare_importance

            summary["plots"].append(compare_importance(sources, loaded, choice or TextChoice(),
                                                       n_tokens, batch_size, torch_device,
                                                       summary, tmp))
            progress("comparing (steps)", 3, steps)
        save_tensors({k: v.contiguous() for k, v in values.items()}, tmp / "maxcos.safetensors")
        write_json_atomic(tmp / "summary.json", summary)
        progress("comparing (steps)", steps, steps)
        return summary
