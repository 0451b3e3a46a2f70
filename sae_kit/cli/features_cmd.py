"""`sae-kit features`: a static HTML report of every feature of one SAE (docs/analysis.md)."""

from __future__ import annotations

import typer

from sae_kit.cli.common import err, friendly_errors
from sae_kit.cli.logs import callback, progress, setup_logging
from sae_kit.eval.settings import FeatureSettings, ImportanceSettings
from sae_kit.record.config import DEVICE_HELP

FEATURES, IMPORTANCE = FeatureSettings(), ImportanceSettings()


@friendly_errors
def features(
    run_dir: str = typer.Argument(..., help="A run directory, an SAE directory or a Hub id."),
    hook_point: str = typer.Option(
        None, help="Which SAE of the run, e.g. blocks.2.hook_resid_pre (needed if it has several)."
    ),
    tokens: int = typer.Option(
        None, show_default=False, help=f"Tokens to run over, whole windows (fewer if the text "
        f"has fewer); default {FEATURES.n_tokens:,}, the tokens `sae-kit eval --alive-tokens` "
        f"counts alive on ({IMPORTANCE.n_tokens:,} with --importance)."
    ),
    out: str = typer.Option(None, help="Report directory; default RUN_DIR/features-HOOK_POINT."),
    held_out: bool = typer.Option(
        False, "--held-out", help="Read the run's held-out part instead of its training part "
        "(where `sae-kit eval` counts alive elements; the default)."
    ),
    dataset: str = typer.Option(
        None, help="Run over this text (Hub id, local file/directory, or 'pydoc') instead of "
        "the run's own."
    ),
    split: str = typer.Option("train", help="Split of --dataset ('train' or 'eval' for pydoc)."),
    top_k: int = typer.Option(FEATURES.top_k, help="Top-activating contexts per feature."),
    batch_size: int = typer.Option(FEATURES.batch_size, help="Windows per forward pass."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    importance: bool = typer.Option(
        False, "--importance", help="Add every feature's functional importance (as `sae-kit "
        "importance`, its attribution on the same pass): columns, panels and a summary."
    ),
    exact_top: int = typer.Option(
        IMPORTANCE.exact_top, help="With --importance: ablate exactly the N features of largest "
        "|KL attribution|."
    ),
    exact_random: int = typer.Option(
        IMPORTANCE.exact_random, help="With --importance: ablate exactly M other features that "
        "fire, at random."
    ),
) -> None:
    """Write a static HTML report of an SAE's features: index, per-feature dashboards, data."""
    from pathlib import Path

    from sae_kit.errors import SaeKitError
    from sae_kit.eval.analysis.collect import TextChoice
    from sae_kit.eval.feature_report import build_feature_report

    if tokens is None:
        tokens = IMPORTANCE.n_tokens if importance else FEATURES.n_tokens
    if dataset and held_out:
        raise SaeKitError("--held-out reads the run's own held-out part; drop it or --dataset")
    if tokens < 1 or top_k < 1 or batch_size < 1:
        raise SaeKitError(f"--tokens, --top-k and --batch-size must be positive, got {tokens}, "
                          f"{top_k}, {batch_size}")
    if exact_top < 0 or exact_random < 0:
        raise SaeKitError(f"--exact-top and --exact-random must be 0 or more, got {exact_top} "
                          f"and {exact_random}")
    settings = FeatureSettings(n_tokens=tokens, top_k=top_k, batch_size=batch_size)
    wanted = None
    if importance:
        wanted = ImportanceSettings(exact_top=exact_top, exact_random=exact_random,
                                    seed=settings.seed)
    choice = TextChoice(dataset, split) if dataset else TextChoice(
        part="eval" if held_out else "train")
    setup_logging()
    with progress("features") as bar:
        index, meta = build_feature_report(run_dir, Path(out) if out else None, hook_point,
                                           settings, choice, device, callback(bar),
                                           importance=wanted)
    err.print(f"{meta['read']} of {meta['text']} in {meta['seconds']:.1f} s; "
              f"{meta['n_alive']:,} of {meta['n_dict']:,} features alive (fired at least "
              f"once), {meta['n_dead']:,} dead", soft_wrap=True, highlight=False)
    err.print(f"[green]report[/]: open {index}")
    typer.echo(index)
