"""`sae-kit eval`: the metrics of docs/eval.md on held-out tokens, and the Pareto plot."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from sae_kit.cli.common import err, friendly_errors, out_console
from sae_kit.cli.logs import progress, setup_logging
from sae_kit.errors import SaeKitError
from sae_kit.eval.settings import EVAL
from sae_kit.record.config import DEVICE_HELP


@friendly_errors
def evaluate(
    run_dir: list[str] = typer.Argument(
        ..., metavar="RUN_DIR",
        help="Run directories, SAE directories (of a run, imported, or SAELens' cfg.json + "
        "sae_weights.safetensors) or Hub ids (namespace/name, or namespace/name/HOOK_POINT for "
        "one SAE)."
    ),
    model: str = typer.Option(
        None, help="Model the SAEs read (Hub id or local directory), where an SAE does not record "
        "it, or a local copy of the one it records."
    ),
    dataset: str = typer.Option(
        None, help="Text to evaluate on (Hub id, local file/directory, or 'pydoc'), instead of "
        "what the SAE was trained on: its held-out documents (every 20th), alive counted on the "
        "rest."
    ),
    context: int = typer.Option(
        None, help="Tokens per window, where an SAE does not record its context length."
    ),
    n_tokens: int = typer.Option(
        None, help="Held-out tokens to evaluate on (fewer if the data has fewer); default "
        "100,000, or 500 windows with --paper-compatible.", show_default=False,
    ),
    batch_size: int = typer.Option(
        EVAL.batch_size, help="Windows per forward pass (also the batch over which the reference's "
        "explained variance takes its mean; the reference used 8)."
    ),
    alive_tokens: int = typer.Option(
        EVAL.alive_tokens, help="Alive elements are counted over the first this many training "
        "tokens "
        "(fewer if the data has fewer), as the reference does."
    ),
    paper_compatible: bool = typer.Option(
        False, "--paper-compatible", help="The reference's (e2e_sae's) evaluation sizes: 500 "
        "held-out windows, batches of 8, alive over 500k training tokens; see docs/eval.md."
    ),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    plot: str = typer.Option(
        None, help="Write the L0 vs CE-loss-increase plot of all the runs to this file, in the "
        "format its extension names (.png, .pdf, .svg, ...); one series per loss and "
        "architecture."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print eval.json (a list of them for several runs)."
    ),
) -> None:
    """Evaluate SAEs on held-out tokens; writes eval.json beside them and prints a table."""
    if plot:
        from sae_kit.eval.pareto import plot_format

        plot_format(plot)  # a misspelt extension fails before the evaluation, not after
    from pathlib import Path

    from sae_kit.eval.evaluation import (  # torch import only once args are parsed
        check_writable,
        evaluate_run,
    )
    from sae_kit.eval.target import Overrides

    setup_logging()
    if plot:
        check_writable(Path(plot))  # before the evaluation, not after it
    if paper_compatible:
        _refuse_other_sizes(n_tokens, batch_size, alive_tokens)
    if context is not None and context < 2:
        raise SaeKitError(f"--context {context}: a window needs at least 2 tokens")
    said = Overrides(model, dataset, context)

    results = []
    for one in run_dir:
        with progress("eval", transient=True) as bar:
            task = bar.add_task(f"eval {one}", total=None, status="")

            def on_batch(done: int, total: int, task: Any = task, bar: Any = bar) -> None:
                bar.update(task, completed=done, total=total)

            results.append(evaluate_run(one, n_tokens, batch_size, device, on_batch,
                                        alive_tokens=alive_tokens,
                                        paper_compatible=paper_compatible, overrides=said))
    if plot:
        from sae_kit.eval.pareto import plot_pareto

        plot_pareto(results, plot)
        err.print(f"[green]plot[/]: {plot}")
    if as_json:
        typer.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        return
    _print_results(results)


def _refuse_other_sizes(n_tokens: int | None, batch_size: int, alive_tokens: int) -> None:
    """--paper-compatible fixes the sizes: one given beside it is a contradiction, not ignored."""
    clash = {"--n-tokens": n_tokens is not None, "--batch-size": batch_size != EVAL.batch_size,
             "--alive-tokens": alive_tokens != EVAL.alive_tokens}
    if any(clash.values()):
        raise SaeKitError("--paper-compatible sets the evaluation sizes to the reference's; "
                          f"drop {', '.join(flag for flag, on in clash.items() if on)}")


def _print_results(results: list[dict[str, Any]]) -> None:
    """A header line and a metrics table per run, on stdout."""
    console = out_console()
    for result in results:
        lam = "" if result["sparsity_coeff"] is None else f", λ={result['sparsity_coeff']}"
        texts = result["texts"]
        console.print(f"[bold]{result['run_dir']}[/] ({result['loss']}{lam}): metrics on "
                      f"{texts['held_out']['read']} of the held-out part, "
                      f"clean CE loss {result['clean_ce_loss']:.4f} nats; alive (fired at least "
                      f"once) counted on {texts['alive']['read']} of the training part from "
                      "its start"
                      + ("; reference-compatible sizes" if result["paper_compatible"] else ""),
                      soft_wrap=True, highlight=False)
        console.print(results_table(result))


# (label, eval.json key, format): one table row each.
_ROWS = [
    ("L0", "l0", ".2f"), ("alive", "alive", "d"), ("alive fraction", "alive_fraction", ".3f"),
    ("CE loss increase", "ce_loss_increase", ".4f"), ("KL", "kl", ".4f"),
    ("explained variance", "explained_variance", ".4f"),
    ("explained variance (e2e_sae)", "explained_variance_e2e_sae", ".4f"), ("MSE", "mse", ".4g"),
    ("downstream MSE", "downstream_mse", ".4g"),
]


def results_table(result: dict[str, Any]) -> Table:
    """One column per SAE (plus "all SAEs" when there are several), one row per metric."""
    columns = dict(result["saes"])
    if "all_saes" in result:
        columns["all SAEs"] = result["all_saes"]
    table = Table("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for label, key, spec in _ROWS:
        cells = ["" if m.get(key) is None else format(m[key], spec) for m in columns.values()]
        table.add_row(label, *cells)
    if "lora" in result:  # a --lora run: the same SAEs with the adapters on
        adapted = {**result["lora"]["saes"], "all SAEs": result["lora"].get("all_saes", {})}
        for label, key, spec in _LORA_ROWS:
            table.add_row(label, *[format(adapted[name][key], spec) for name in columns])
    return table


_LORA_ROWS = [("CE loss increase, with LoRA", "ce_loss_increase", ".4f"),
              ("KL, with LoRA", "kl", ".4f")]
