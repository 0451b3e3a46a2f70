"""`sae-kit bench`: score a run's SAEs against the ground truth of a synthetic model.

    sae-kit train --model synthetic:n_features=512,d_model=64 --loss e2e --out runs/e2e
    sae-kit bench runs/e2e          # the CLI calls bench_run()

Only a model built by a model source that knows its features (``ModelSource.ground_truth``,
e.g. ``--model synthetic:...``) has a ground truth; on any other run the recovery metrics do
not apply and ``sae-kit eval`` gives the ones that do. Each SAE gets the metrics of
:mod:`sae_kit.eval.ground_truth` (on its alive latents), next to L0, alive latents and the
CE-loss increase of ``sae-kit eval`` (run afresh, so ``eval.json`` is rewritten) and the same
numbers under SAEBench's field names (``saebench``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError
from sae_kit.eval.evaluation import BatchCallback, evaluate_run
from sae_kit.eval.ground_truth import recovery
from sae_kit.eval.seeds import Stat, mean_std, ties_with_best
from sae_kit.eval.settings import BENCH
from sae_kit.eval.target import resolve_run_dir
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.source import GroundTruth
from sae_kit.model_names import source_ref
from sae_kit.record.config import TrainConfig
from sae_kit.store.run_dir import RunDir
from sae_kit.store.sae_dir import load_run

OTHER_METRICS = "L0, alive latents, CE-loss increase and KL (`sae-kit eval`)"


def open_run(run_dir: Path) -> tuple[TrainConfig, dict[HookPoint, SAE]]:
    """A run's settings (its record, ``RunDir.read``) and SAEs."""
    record, saes = load_run(run_dir)
    return record.config, saes


def ground_truths(model: str, hook_points: list[HookPoint],
                  run_dir: Path) -> dict[HookPoint, GroundTruth]:
    """The true features at each hook point, or one error line saying what applies instead."""
    ref = source_ref(model)
    if ref is None:
        raise SaeKitError(f"{str(run_dir)!r} was trained on {model!r}, which has no ground "
                          f"truth; bench's recovery metrics need a synthetic model (--model "
                          f"synthetic:...). For this run use {OTHER_METRICS}")
    source = plugins.load("model_sources", ref.scheme)()
    truths = {hp: source.ground_truth(ref.options, hp.position) for hp in hook_points}
    missing = [hp.name for hp, truth in truths.items() if truth is None]
    if missing:
        raise SaeKitError(f"{model!r} knows no ground truth at {', '.join(missing)} (run "
                          f"{str(run_dir)!r}); its SAEs get {OTHER_METRICS}")
    return {hp: truth for hp, truth in truths.items() if truth is not None}


def check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise SaeKitError(f"--threshold {threshold}: must be in (0, 1] (a cosine similarity)")


def prepare(run_ref: str) -> tuple[Path, TrainConfig, dict[HookPoint, SAE],
                                   dict[HookPoint, GroundTruth]]:
    """The run, its settings, SAEs and ground truths: fails in a moment on a run bench can't
    score, so the CLI checks every run before evaluating any."""
    run_dir = resolve_run_dir(run_ref)
    config, saes = open_run(run_dir)
    return run_dir, config, saes, ground_truths(config.model, list(saes), run_dir)


def bench_run(run_ref: str, *, threshold: float = BENCH.threshold,
              n_tokens: int = BENCH.n_tokens, alive_tokens: int = BENCH.alive_tokens,
              batch_size: int | None = None, device: str = "auto",
              on_batch: BatchCallback | None = None) -> list[dict[str, Any]]:
    """One record per SAE of the run: ground-truth recovery, eval metrics, SAEBench names.

    ``batch_size`` (windows per pass) defaults to ``BENCH.batch_tokens`` tokens' worth."""
    check_threshold(threshold)
    run_dir, config, saes, truths = prepare(run_ref)
    if batch_size is None:
        batch_size = max(1, BENCH.batch_tokens // RunDir(run_dir).read().resolved.context)
    alive: dict[HookPoint, torch.Tensor] = {}
    evaluated = evaluate_run(str(run_dir), n_tokens, batch_size, device, on_batch,
                             alive_tokens=alive_tokens, on_alive=alive.update)
    return [_record(config, run_dir, hp, sae, evaluated, recovery(
        truths[hp], sae.dict_elements.detach().cpu(), alive[hp], threshold))
        for hp, sae in saes.items()]


def _record(config: TrainConfig, run_dir: Path, hp: HookPoint, sae: SAE,
            evaluated: dict[str, Any], truth: dict[str, Any]) -> dict[str, Any]:
    metrics = evaluated["saes"][hp.name]
    return {
        "run_dir": str(run_dir), "hook_point": hp.name, "model": config.model,
        "point": point_label(config, sae.penalised), "seed": config.seed,
        "loss": config.loss, "architecture": config.architecture,
        "sparsity_coeff": config.sparsity_coeff if sae.penalised else None,
        "n_dict": sae.n_dict, "l0": metrics["l0"], "alive": metrics["alive"],
        "ce_loss_increase": metrics["ce_loss_increase"], "kl": metrics["kl"],
        "explained_variance": metrics["explained_variance"], "ground_truth": truth,
        "saebench": saebench_fields(metrics, evaluated["clean_ce_loss"], evaluated["n_tokens"]),
    }


def point_label(config: TrainConfig, penalised: bool) -> str:
    """What a run is apart from its seed: loss, architecture and its options, lambda."""
    options = config.architecture_options or {}
    shown = ",".join(f"{k}={v}" for k, v in sorted(options.items()) if k != "bias_init")
    label = f"{config.loss} {config.architecture}"
    label += f"({shown})" if shown else ""
    return f"{label} lambda={config.sparsity_coeff:g}" if penalised else label


def saebench_fields(metrics: dict[str, Any], clean_ce: float, n_tokens: int) -> dict[str, Any]:
    """The metrics SAEBench's core eval also has, under its category and field names."""
    return {
        "model_behavior_preservation": {"kl_div_with_sae": metrics["kl"]},
        "model_performance_preservation": {"ce_loss_with_sae": metrics["ce_loss"],
                                           "ce_loss_without_sae": clean_ce},
        "reconstruction_quality": {"explained_variance": metrics["explained_variance"],
                                   "mse": metrics["mse"]},
        "sparsity": {"l0": metrics["l0"]},
        "token_stats": {"total_tokens_eval_reconstruction": n_tokens},
    }


SUMMARY_METRICS = {
    "l0": ("l0",), "alive": ("alive",), "ce_loss_increase": ("ce_loss_increase",),
    "mmcs_functional": ("ground_truth", "functional", "mmcs"),
    "mmcs_rest": ("ground_truth", "rest", "mmcs"),
    "mcc_functional": ("ground_truth", "functional", "mcc"),
    "mcc_rest": ("ground_truth", "rest", "mcc"),
    "recovered_functional": ("ground_truth", "functional", "recovered"),
    "recovered_rest": ("ground_truth", "rest", "recovered"),
    "latents_on_functional": ("ground_truth", "latents_on_functional"),
}
"""What ``summarize`` averages over seeds, and where each sits in a record."""
HIGHER_IS_BETTER = {"ce_loss_increase": False, "mmcs_functional": True, "mmcs_rest": True,
                    "mcc_functional": True, "mcc_rest": True, "recovered_functional": True,
                    "recovered_rest": True}
"""The metrics whose best point is marked, with the points not distinguishable from it at 2σ."""


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of one point (model, hook point, settings) over seeds: [mean, std] of each, and
    per compared metric ``compared[name]``: "best", "tie" (not distinguishable from the best
    at 2σ, :mod:`sae_kit.eval.seeds`) or ""."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["model"], record["hook_point"], record["point"]),
                          []).append(record)
    summary = []
    for (model, hook_point, point), members in groups.items():
        row: dict[str, Any] = {"model": model, "hook_point": hook_point, "point": point,
                               "seeds": sorted(m["seed"] for m in members)}
        for name, path in SUMMARY_METRICS.items():
            values = [_get(m, path) for m in members]
            present = [float(v) for v in values if v is not None]
            row[name] = mean_std(present) if present else None
        summary.append(row)
    for name, higher in HIGHER_IS_BETTER.items():
        stats = [Stat(*row[name], len(row["seeds"])) if row[name] else None for row in summary]
        for row, mark in zip(summary, ties_with_best(stats, higher), strict=True):
            row.setdefault("compared", {})[name] = mark
    return summary


def _get(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        record = record[key]
    return record
