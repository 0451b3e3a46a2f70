"""`sae-kit train`: train SAEs; prints the run directory on stdout."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from sae_kit.cli.common import err, friendly_errors
from sae_kit.cli.logs import progress, setup_logging
from sae_kit.cli.train_options import (
    config_from_options,
    config_parameters,
    config_with_file,
    lambdas_from_options,
)
from sae_kit.errors import SaeKitError

if TYPE_CHECKING:
    from sae_kit.train.checkpoint import TrainState
    from sae_kit.train.run import Run

@friendly_errors
def train_command(ctx: typer.Context, **options: Any) -> None:
    """Train SAEs on a model's residual stream (default: e2e on the built-in model)."""
    ctx.call_on_close(_leave_process_group)
    setup_logging()
    if options["resume"]:
        if Path(options["resume"], "recipe.json").is_file():
            _resume_recipe(ctx, options["resume"], options["as_json"])
            return
        runs, start, group_dir = _resume(ctx, options["resume"])
        _fit(runs, start, options["as_json"], group_dir)
        return
    if options["config"]:
        config, lambdas = config_with_file(options, _given(ctx))
    else:
        config, lambdas = config_from_options(options), lambdas_from_options(options)
    _refuse_meaningless_lambda(ctx, config.architecture)
    if config.finetune_fraction:
        _recipe(config, lambdas, options["as_json"])
        return
    from sae_kit.train.api import prepare  # torch import only once args are valid

    runs, group_dir = prepare(config, lambdas)  # every input error surfaces here
    _fit(runs, None, options["as_json"], group_dir)


# The options come from TrainConfig's fields (sae_kit.cli.train_options), so Typer reads them
# from this signature rather than from the function's own parameters.
train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
     *config_parameters()]
)


def _refuse_meaningless_lambda(ctx: typer.Context, architecture: str) -> None:
    """--lambda weights a penalty that some architectures (TopK: k sets the L0) do not have."""
    if getattr(ctx.get_parameter_source("sparsity_coeff"), "name", "") != "COMMANDLINE":
        return
    from sae_kit.train.api import refuse_meaningless_lambda

    refuse_meaningless_lambda(architecture, "--lambda")


def _leave_process_group() -> None:
    if "torch.distributed" in sys.modules:  # only a run that imported torch can have joined one
        from sae_kit.train.distributed import teardown

        teardown()


def _given(ctx: typer.Context) -> set[str]:
    """The options given on the command line (or in the environment), not left at defaults."""
    # Typer vendors click, so compare the ParameterSource by name.
    sources = {name: getattr(ctx.get_parameter_source(name), "name", "") for name in ctx.params}
    given = {name for name, source in sources.items() if source in ("COMMANDLINE", "ENVIRONMENT")}
    return given - {"as_json"}


def _resume(ctx: typer.Context, run_dir: str
            ) -> tuple[list[Run], TrainState, Path | None]:
    """Rebuild a run (or a group) from RUN_DIR, and the group directory (None for a run);
    options other than the few allowed are refused, not ignored."""
    from sae_kit.train.group import is_group
    from sae_kit.train.resume import resume, resume_group

    _resume_refusals(ctx, run_dir)
    given = _given(ctx) - {"resume"}

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    overrides = {name: ctx.params[name] for name in given}
    if is_group(run_dir):
        return (*resume_group(run_dir, warn=warn, **overrides), Path(run_dir))
    run, start = resume(run_dir, warn=warn, **overrides)
    return [run], start, None


def _recipe(config: Any, lambdas: list[float], as_json: bool) -> None:
    """--finetune-fraction: MSE pre-training, then the fine-tune (sae_kit.train.recipe)."""
    if len(lambdas) > 1:
        raise SaeKitError("--finetune-fraction trains one SAE per hook point; give one --lambda "
                          "(a sweep file runs the recipe at several)")
    from sae_kit.train import recipe

    _fit_recipe(recipe.start(config), False, as_json)


def _resume_recipe(ctx: typer.Context, run_dir: str, as_json: bool) -> None:
    from sae_kit.train import recipe

    _resume_refusals(ctx, run_dir)
    overrides = {name: ctx.params[name] for name in _given(ctx) - {"resume"}}
    todo, resuming = recipe.remaining(run_dir, **overrides)
    _fit_recipe(todo, resuming, as_json)


def _fit_recipe(todo: list[Any], resuming: bool, as_json: bool) -> None:
    from sae_kit.train import recipe

    out = Path(todo[-1].config.output_dir)
    last = todo[-1]

    def fit_phase(runs: list[Run], start: TrainState | None, name: str) -> None:
        err.print(f"[bold]{escape(name)}[/]: {escape(str(runs[0].run_dir))}", highlight=False)
        _fit(runs, start, as_json, resume_dir=out, label=name,
             report=runs[0].config.output_dir == last.config.output_dir)

    recipe.fit_phases(todo, resuming, fit_phase)


def _resume_refusals(ctx: typer.Context, run_dir: str) -> None:
    """Options other than the few a resumed run may change are refused, not ignored."""
    from sae_kit.train.resume import RESUME_OVERRIDES

    refused = sorted(_given(ctx) - {"resume"} - set(RESUME_OVERRIDES))
    if refused:
        flags = {p.name: p.opts[0] for p in ctx.command.params}
        raise SaeKitError(
            f"--resume takes its settings from {run_dir}/config.json; drop "
            f"{', '.join(flags[name] for name in refused)} (only --device, --save-every and "
            "--keep-checkpoints may be given again)"
        )


def _fit(runs: list[Run], start: TrainState | None, as_json: bool,
         group_dir: Path | None = None, resume_dir: Path | None = None,
         label: str = "training", report: bool = True) -> None:
    """Train ``runs`` with a progress bar; print the run directory (``report``). A signal's
    message names ``resume_dir`` (a recipe's directory) where given."""
    from sae_kit.train.distributed import peer_failure
    from sae_kit.train.loop import fit
    from sae_kit.train.nonfinite import MembersStopped
    from sae_kit.train.signals import Interrupted
    from sae_kit.train.stats import step_status

    run = runs[0]
    main = run.dist.is_main  # only rank 0 prints
    last: dict[str, Any] = {}
    with progress(label, disable=not main) as bar:
        task = bar.add_task(label, total=run.total_steps,
                                 completed=start.step if start else 0, status="")

        def on_step(step: int, total: int, row: dict[str, Any] | None) -> None:
            if row:
                last.clear()
                last.update(row)
            bar.update(task, completed=step, total=total, status=step_status(last))

        try:
            run_dir = fit(runs, on_step=on_step, start=start, group_dir=group_dir)
        except (RuntimeError, OSError) as exc:  # under torchrun: a peer rank died
            gone = peer_failure(exc, run.dist)
            if gone is None:
                raise
            raise gone from None
        except Interrupted as stop:
            bar.stop()
            if resume_dir is not None:
                stop = Interrupted(stop.signum, resume_dir, stop.step, stop.checkpoint,
                                   stop.world_size)
            if main:
                err.print(f"[yellow]{escape(str(stop))}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None
        except MembersStopped as stopped:  # the other runs of the group finished and are saved
            bar.stop()
            if main:
                _report_stopped(stopped.lines, len(runs), group_dir)
            raise typer.Exit(1) from None
    if not main:
        return
    if not report:
        err.print(f"[green]done[/]: {escape(label)}  {step_status(last)}", highlight=False)
        return
    if start and start.step >= run.total_steps:
        err.print(f"[green]done[/]: all {run.total_steps} steps were already trained")
    else:
        err.print(f"[green]done[/]: {step_status(last)}")
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), "metrics": last}))
    else:
        typer.echo(str(run_dir))


def _report_stopped(lines: list[str], n_runs: int, group_dir: Path | None) -> None:
    """The runs that finished, then one error line per run that stopped (it says why)."""
    err.print(f"[green]done[/]: {n_runs - len(lines)} of {n_runs} runs trained in "
              f"{escape(str(group_dir))}", highlight=False, soft_wrap=True)
    for line in lines:
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


