"""`sae-kit bench`: recovery of a synthetic model's true features, per SAE and over seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from sae_kit.cli.common import friendly_errors
from sae_kit.cli.logs import progress, setup_logging
from sae_kit.eval.settings import BENCH
from sae_kit.record.config import DEVICE_HELP


@friendly_errors
def bench(
    run_dir: list[str] = typer.Argument(
        ..., help="Run directories trained on a synthetic model (--model synthetic:...), or a "
        "sweep's output directory (every run in it)."
    ),
    threshold: float = typer.Option(
        BENCH.threshold, help="A true feature counts as recovered when a latent's cosine with "
        "it is at least this."
    ),
    n_tokens: int = typer.Option(
        BENCH.n_tokens, help="Held-out tokens for L0, KL and CE increase."
    ),
    alive_tokens: int = typer.Option(
        BENCH.alive_tokens, help="Training tokens over which alive latents are counted."
    ),
    batch_size: int = typer.Option(
        None, help=f"Windows per forward pass (default: {BENCH.batch_tokens} tokens' worth of the "
        "run's context)."
    ),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="Print {runs: one record per SAE, points: mean and std over "
        "seeds} as JSON."
    ),
) -> None:
    """Score SAEs against the ground truth they were trained on (rewrites RUN_DIR/eval.json).

    Per SAE: mean max cosine (MMCS) of each true feature to the dictionary and back, matching
    MCC and the share recovered above --threshold, for the functional set F and for the rest;
    L0, alive latents, CE-loss increase. Runs that differ only in their seed are one point:
    the table shows mean ± standard deviation over them.
    """
    from sae_kit.eval.bench import bench_run, check_threshold, prepare, summarize

    setup_logging()
    check_threshold(threshold)
    runs = [str(path) for one in run_dir for path in _expand(one)]
    for one in runs:
        prepare(one)  # every run is checked before minutes go into the first
    records: list[dict[str, Any]] = []
    with progress("bench", transient=True) as bar:
        for one in runs:
            task = bar.add_task(f"bench {one}", total=None, status="")

            def on_batch(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            records += bench_run(one, threshold=threshold, n_tokens=n_tokens,
                                 alive_tokens=alive_tokens, batch_size=batch_size,
                                 device=device, on_batch=on_batch)
    points = summarize(records)
    if as_json:
        typer.echo(json.dumps({"runs": records, "points": points}, indent=2))
        return
    Console().print(points_table(points, threshold))


def _expand(ref: str) -> list[Path | str]:
    """A sweep's output directory stands for the runs in it; anything else for itself."""
    from sae_kit.store.run_dir import RunDir

    path = Path(ref)
    if path.is_dir() and not RunDir(path).is_run():
        inner = sorted(p for p in path.iterdir() if RunDir(p).is_run())
        if inner:
            return list(inner)
    return [ref]


# (header, summary key, format)
_COLUMNS = [
    ("L0", "l0", ".2f"), ("alive", "alive", ".0f"), ("CE incr.", "ce_loss_increase", ".4f"),
    ("MMCS F", "mmcs_functional", ".3f"), ("MMCS rest", "mmcs_rest", ".3f"),
    ("MCC F", "mcc_functional", ".3f"), ("MCC rest", "mcc_rest", ".3f"),
    ("rec. F", "recovered_functional", ".2f"), ("rec. rest", "recovered_rest", ".2f"),
    ("latents on F", "latents_on_functional", ".2f"),
]


SEED_NOTE = ("mean ± sample std over seeds; bold: the column's best point, ≈: not "
             "distinguishable from it at 2σ")


def points_table(points: list[dict[str, Any]], threshold: float) -> Table:
    """One row per point: mean ± std over its seeds (just the value for one seed)."""
    table = Table("point", "hook point", "seeds",
                  title=f"ground-truth recovery (rec. = share with cosine >= {threshold:g})")
    for header, _, _ in _COLUMNS:
        table.add_column(header, justify="right")
    for point in points:
        cells = [_cell(point[key], spec, len(point["seeds"]), point["compared"].get(key, ""))
                 for _, key, spec in _COLUMNS]
        table.add_row(point["point"], point["hook_point"], str(len(point["seeds"])), *cells)
    table.caption = SEED_NOTE
    return table


def _cell(value: tuple[float, float] | None, spec: str, n_seeds: int, mark: str) -> str:
    if value is None:
        return ""
    mean, std = value
    text = format(mean, spec) + (f" ± {format(std, spec)}" if n_seeds > 1 else "")
    return f"[bold]{text}[/]" if mark == "best" else f"{text} ≈" if mark == "tie" else text
