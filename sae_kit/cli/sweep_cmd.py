"""`sae-kit sweep SWEEP.toml`: train every point of a sweep in shared passes, evaluate, plot."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from sae_kit.cli.common import err, friendly_errors
from sae_kit.cli.logs import callback, progress, setup_logging
from sae_kit.errors import SaeKitError

if TYPE_CHECKING:
    from sae_kit.progress import Progress
    from sae_kit.sweep.spec import Sweep


@friendly_errors
def sweep_command(
    path: str = typer.Argument(..., metavar="SWEEP.toml", help="The sweep file (docs/cli.md)."),
    only: int = typer.Option(
        None, "--only", metavar="N",
        help="Train and evaluate group N alone (as --print-commands numbers them).",
    ),
    print_commands: bool = typer.Option(
        False, "--print-commands",
        help="Print one command per shared-pass group, for a scheduler to spread over machines "
        "(a SLURM array: run line $SLURM_ARRAY_TASK_ID); nothing is trained.",
    ),
    launcher: str = typer.Option(
        "sae-kit", help="What --print-commands starts each group with, e.g. "
        "'torchrun --nproc-per-node 4 -m sae_kit'.",
    ),
) -> None:
    """Train a grid of SAEs, one shared pass per group; evaluate them; write the table and plot.

    Finished points are skipped and interrupted ones resume from their checkpoints, so the same
    command continues a sweep. Prints the results table on stdout.
    """
    from sae_kit.sweep.spec import load_sweep

    spec = load_sweep(path)
    if print_commands:
        for i in range(len(spec.groups)):
            typer.echo(f"{launcher} sweep {shlex.quote(path)} --only {i}")
        err.print(f"then `sae-kit sweep {escape(path)}` writes the table and plot")
        return
    if only is not None and not 0 <= only < len(spec.groups):
        raise SaeKitError(f"--only {only}: {path} has groups 0 to {len(spec.groups) - 1}")
    _run(spec, only)


def _run(spec: Sweep, only: int | None) -> None:
    from sae_kit.sweep.changes import check_unchanged
    from sae_kit.sweep.preflight import check_points
    from sae_kit.sweep.report import full_table, write_report
    from sae_kit.sweep.runner import failed_points, results, run_group
    from sae_kit.train.signals import Interrupted

    def say(message: str) -> None:
        err.print(f"[bold]sweep[/]: {escape(message)}", highlight=False, soft_wrap=True)

    setup_logging()
    groups = spec.groups if only is None else [spec.groups[only]]
    check_points(spec)  # every point, even with --only: a sweep is one file to mend
    check_unchanged([p for g in groups for p in g], str(spec.path))  # before training any
    say(f"{len(spec.points)} points in {len(spec.groups)} shared-pass group(s); runs in {spec.out}")
    for number, group in enumerate(groups, start=1):
        # One bar per group: a sweep of many groups would otherwise stack dozens of bars.
        with progress("sweep", disable=os.environ.get("RANK", "0") != "0") as bar:
            try:
                run_group(spec, group, say, _named(callback(bar), f"group {number}/{len(groups)}"))
            except Interrupted as stop:
                bar.stop()
                err.print(f"[yellow]stopped by a signal after step {stop.step}; run the same "
                          "command again to continue[/]", highlight=False)
                raise typer.Exit(stop.exit_code) from None
    if only is None:
        found = results(spec)
        text_path, plot_path = write_report(found, spec.out, spec.plot)
        typer.echo(full_table(found))
        say(f"table: {text_path}" + (f"; plot: {plot_path}" if plot_path.exists() else ""))
    stopped = failed_points([p for g in groups for p in g])
    for line in stopped if os.environ.get("RANK", "0") == "0" else []:  # rank 0 speaks
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if stopped:  # the others are trained, evaluated and in the table
        raise typer.Exit(1)


def _named(show: Progress, prefix: str) -> Progress:
    """``show`` with every phase named after its group: ``group 2/5 training``."""
    return lambda what, done, total: show(f"{prefix} {what}", done, total)
