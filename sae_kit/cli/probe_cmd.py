"""`sae-kit probe`: sparse probing with k SAE latents against a probe on the raw activation."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from sae_kit.cli.common import friendly_errors
from sae_kit.eval.settings import PROBE
from sae_kit.record.config import DEVICE_HELP


@friendly_errors
def probe(
    run_dir: str = typer.Argument(..., help="A run directory, an SAE directory or a Hub id."),
    task: list[str] = typer.Option(
        None, "--task", help="A task by file name, e.g. 113_movie_sent (repeatable; default: "
        "every binary task)."
    ),
    k: str = typer.Option(
        ",".join(map(str, PROBE.ks)), help="Latents per sparse probe, comma-separated."
    ),
    max_examples: int = typer.Option(
        PROBE.max_examples, help="Prompts per task (a seeded random subset)."
    ),
    tasks_dir: str = typer.Option(
        None, help="A directory of NAME.csv[.zst] files with columns prompt,target (default: "
        "the tasks sae-probes ships; pip install 'sae-kit[probes]')."
    ),
    seed: int = typer.Option(PROBE.seed, help="Seed of the subset and the train/test split."),
    batch_size: int = typer.Option(PROBE.batch_size, help="Prompts per forward pass."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print every task's scores as JSON."),
) -> None:
    """Test AUC and accuracy of logistic probes on the top-k latents of each SAE (k = 1, 2, 5)
    and on the raw activation at its hook point, per task (Kantamneni et al. 2025)."""
    from sae_kit.cli.logs import progress, setup_logging
    from sae_kit.errors import SaeKitError
    from sae_kit.eval.probe_run import probe_run

    try:
        ks = [int(part) for part in k.split(",") if part.strip()]
    except ValueError:
        raise SaeKitError(f"--k {k!r}: give whole numbers separated by commas, e.g. 1,2,5"
                          ) from None
    setup_logging()
    with progress("probe", transient=True) as bar:
        bar_task = bar.add_task("probing", total=None, status="")

        def on_task(name: str, done: int, total: int) -> None:
            bar.update(bar_task, completed=done, total=total, status=name)

        found = probe_run(run_dir, tasks=task or (), ks=ks, max_examples=max_examples,
                          tasks_from=tasks_dir, batch_size=batch_size, device=device,
                          seed=seed, on_task=on_task)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    Console().print(probe_table(found))


def probe_table(found: dict[str, Any]) -> Table:
    """Test AUC per task and hook point: the raw-activation probe, then each k."""
    ks = found["ks"]
    table = Table("task", "hook point", "n test", "raw act. AUC",
                  *(f"k={k} AUC" for k in ks), title="sparse probing (test ROC AUC)")
    for result in found["tasks"]:
        for hook_point, probes in result["saes"].items():
            base = result["baseline"][hook_point]["test_auc"]
            table.add_row(result["task"], hook_point, str(result["n_test"]), f"{base:.3f}",
                          *(f"{probes[str(k)]['test_auc']:.3f}" for k in ks))
    return table
