"""`sae-kit importance`'s files and pipeline: importance.json, importance.safetensors and
density_importance.png per SAE, for every SAE of a run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.collect import TextChoice
from sae_kit.eval.analysis.importance import (
    ImportanceData,
    check_exact_counts,
    collect_importance,
)
from sae_kit.eval.analysis.importance_values import per_feature, results_json
from sae_kit.eval.analysis.source import AnalysisSource
from sae_kit.eval.settings import ImportanceSettings
from sae_kit.store.staging import make_staging, staged_dir


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


def open_sources(ref: str, hook_point: str | None, device: torch.device) -> list[AnalysisSource]:
    """Every SAE of a run (or the one at ``hook_point``), or the one SAE of an SAE directory."""
    from sae_kit.eval.analysis.source import open_source
    from sae_kit.store.sae_dir import is_sae_dir, sae_dirs
    from sae_kit.store.sources import resolve_sae_source

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
        check_exact_counts(settings, source)
    targets = [(out or s.path) / f"importance-{s.hook_point.name}" for s in sources]
    # Made before the model loads (an unwritable --out is one line at once); each SAE's files
    # are moved in whole once written, so a full disk leaves no half results.
    staging = [make_staging(target, WHAT) for target in targets]
    try:
        loaded = load_model(sources[0].model, revision=sources[0].revision,
                            device=torch_device)
        written = []
        for source, target, tmp in zip(sources, targets, staging, strict=True):
            loaded.check_fits(source.hook_point, source.sae.d_in)
            progress = (lambda phase, n, s=source: on_batch(s, phase, n)) if on_batch else None
            data = collect_importance(source, loaded, choice or TextChoice(), settings,
                                      torch_device, progress)
            with staged_dir(target, WHAT, last="importance.json", tmp=tmp):
                write_importance(data, tmp)
            written.append((target / "importance.json", data))
        return written
    finally:
        for tmp in staging:  # those not published: an error before their turn
            shutil.rmtree(tmp, ignore_errors=True)


WHAT = "importance results"
