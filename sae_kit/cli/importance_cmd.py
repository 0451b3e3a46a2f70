"""`sae-kit importance`: every feature's functional importance (docs/analysis.md)."""

from __future__ import annotations

import typer

from sae_kit.cli.common import err, friendly_errors
from sae_kit.eval.settings import ImportanceSettings
from sae_kit.record.config import DEVICE_HELP

IMPORTANCE = ImportanceSettings()


@friendly_errors
def importance(
    run_dir: str = typer.Argument(..., help="A run directory, an SAE directory or a Hub id."),
    hook_point: str = typer.Option(
        None, help="Only this SAE of the run, e.g. blocks.2.hook_resid_pre (default: every SAE)."
    ),
    tokens: int = typer.Option(
        IMPORTANCE.n_tokens, help="Held-out tokens to run over (fewer if the text has fewer)."
    ),
    out: str = typer.Option(
        None, help="Directory for importance-HOOK_POINT/ (default: the run or SAE directory)."
    ),
    dataset: str = typer.Option(
        None, help="Run over all of this text (Hub id, local file/directory, or 'pydoc') instead "
        "of the run's held-out split."
    ),
    split: str = typer.Option("train", help="Split of --dataset ('train' or 'eval' for pydoc)."),
    exact_top: int = typer.Option(
        IMPORTANCE.exact_top, help="Ablate exactly the N features of largest |attribution| (KL, "
        "spliced)."
    ),
    exact_random: int = typer.Option(
        IMPORTANCE.exact_random, help="Ablate exactly M other features that fire, drawn at random "
        "(--seed)."
    ),
    seed: int = typer.Option(IMPORTANCE.seed, help="Seed of the random features ablated exactly."),
    batch_size: int = typer.Option(IMPORTANCE.batch_size, help="Windows per forward pass."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Attribution (-c * dM/dc) and exact ablation of every feature, for KL and CE, under the
    'spliced' (default) and 'with error' conventions; prints each importance.json."""
    from pathlib import Path

    from sae_kit.cli.logs import progress, setup_logging
    from sae_kit.errors import SaeKitError
    from sae_kit.eval.analysis.collect import TextChoice
    from sae_kit.eval.analysis.importance_files import build_importance

    if tokens < 1 or batch_size < 1:
        raise SaeKitError(f"--tokens and --batch-size must be positive, got {tokens} and "
                          f"{batch_size}")
    if exact_top < 0 or exact_random < 0:
        raise SaeKitError(f"--exact-top and --exact-random must be 0 or more, got {exact_top} "
                          f"and {exact_random}")
    setup_logging()
    settings = ImportanceSettings(n_tokens=tokens, batch_size=batch_size, exact_top=exact_top,
                                  exact_random=exact_random, seed=seed)
    choice = TextChoice(dataset, split) if dataset else TextChoice()
    with progress("importance", transient=True) as bar:
        tasks: dict[tuple[str, str], int] = {}

        def on_batch(source, phase: str, done: int) -> None:
            key = (source.hook_point.name, phase)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{phase} {key[0]}", total=tokens, status="")
            bar.update(tasks[key], completed=min(done, tokens), status="tokens")

        written = build_importance(run_dir, Path(out) if out else None, hook_point, settings,
                                   choice, device, on_batch)
    for path, data in written:
        _report(data)
        typer.echo(path)


def _report(data) -> None:
    from sae_kit.eval.analysis.importance_values import summary

    s, meta = summary(data), data.meta
    err.print(f"[bold]{meta['hook_point']}[/]: {meta['n_tokens']:,} tokens of {meta['text']} "
              f"in {meta['seconds']:.1f} s")
    for convention in meta["conventions"]:
        kl, ce = s[convention]["kl"], s[convention]["ce"]
        rho = kl["spearman_attribution_vs_exact"]
        shares = kl["share_of_abs_attribution"]
        err.print(f"  {convention.replace('_', ' ')}: KL {kl['whole_sae']:.4g}, CE "
                  f"{ce['whole_sae']:.4g} (clean {s['clean_ce']:.4g}); top 1% / 10% of features "
                  f"carry {_pct(shares['top_1pct'])} / {_pct(shares['top_10pct'])} of |KL "
                  f"attribution|; Spearman(attribution, exact) KL {_num(rho)}, CE "
                  f"{_num(ce['spearman_attribution_vs_exact'])}")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"
