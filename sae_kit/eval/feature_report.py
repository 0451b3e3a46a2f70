"""`sae-kit features`, composed: open the SAE once, gather its data, write the report.

    sae-kit features runs/sae-kit-tiny-e2e-20261125-120000 --tokens 50000 --out report/

This module sits above both halves so neither imports the other: the data
(:mod:`sae_kit.eval.analysis.features`) and its view (:mod:`sae_kit.eval.report.render`, which
reads the data).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.collect import ALIVE_TEXT, TextChoice
from sae_kit.eval.analysis.features import collect_features
from sae_kit.eval.analysis.source import AnalysisSource, open_source
from sae_kit.eval.report.render import write_report
from sae_kit.eval.settings import FeatureSettings, ImportanceSettings
from sae_kit.model.device import resolve_device
from sae_kit.model.loading import load_model
from sae_kit.progress import Progress, ProgressLines
from sae_kit.store.staging import staged_dir


def default_report_dir(source: AnalysisSource) -> Path:
    """Where the report goes without ``--out``: beside the SAE, named by its hook point."""
    return source.path / f"features-{source.hook_point.name}"


def build_feature_report(ref: str, out: Path | None = None, hook_point: str | None = None,
                         settings: FeatureSettings | None = None,
                         choice: TextChoice | None = None, device: str = "auto",
                         progress: Progress | None = None,
                         importance: ImportanceSettings | None = None,
                         ) -> tuple[Path, dict[str, Any]]:
    """Run the whole `sae-kit features` pipeline; returns the report's index.html and meta.

    The SAE is loaded once, on ``device``; ``out`` defaults to :func:`default_report_dir`. The
    text defaults to the one `sae-kit eval` counts alive elements on (``ALIVE_TEXT``: the
    training part from its start), so both count the same dead features. With ``importance``
    the report also carries every feature's importance (its n_tokens and batch_size are the
    report's), measured, as every metric is, on tokens never trained on: the held-out part
    instead of the training part. ``progress(what, done, total)`` (sae_kit.progress; default:
    log lines) hears of the tokens read, then of the features written.
    """
    settings = settings or FeatureSettings()
    if settings.n_tokens < 1:
        raise SaeKitError(f"--tokens must be positive, got {settings.n_tokens}")
    torch_device = resolve_device(device)
    source = open_source(ref, hook_point, torch_device)
    out = Path(out) if out is not None else default_report_dir(source)
    # Built beside `out` and moved in once whole (index.html last): a full disk leaves no half
    # report, and an unwritable --out fails here, before the model loads.
    with staged_dir(out, "feature report", last="index.html") as tmp:
        loaded = load_model(source.model, revision=source.revision, device=torch_device)
        loaded.check_fits(source.hook_point, source.sae.d_in)
        if importance is not None:
            importance = replace(importance, n_tokens=settings.n_tokens,
                                 batch_size=settings.batch_size)
        progress = progress or ProgressLines()
        choice = choice or ALIVE_TEXT
        if importance is not None and choice.dataset is None:
            choice = TextChoice(part="eval")
        data = collect_features(source, loaded, choice, settings,
                                torch_device, progress, importance)
        write_report(data, tmp, progress, explained_from=out)
    return out / "index.html", data.meta
