"""`sae-kit train`: train SAEs; prints the run directory on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sae_kit.builtin import BUILTIN_DATASET_NAME, BUILTIN_MODEL_NAME
from sae_kit.cli.common import err, friendly_errors, parse_floats, parse_key_values
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.train.config import TrainConfig, field_help

if TYPE_CHECKING:
    from sae_kit.train.checkpoint import TrainState
    from sae_kit.train.loop import Run

H = field_help


@friendly_errors
def train(
    ctx: typer.Context,
    model: str = typer.Option(BUILTIN_MODEL_NAME, help=H("model")),
    revision: str = typer.Option(None, help=H("revision")),
    dataset: str = typer.Option(BUILTIN_DATASET_NAME, help=H("dataset")),
    split: str = typer.Option("train", help=H("split")),
    eval_split: str = typer.Option(None, help=H("eval_split")),
    text_column: str = typer.Option("text", help=H("text_column")),
    loss: str = typer.Option("e2e", help=H("loss")),
    loss_option: list[str] = typer.Option(
        [], "--loss-option", "-O",
        help="Loss option as key=value, repeatable (e.g. ds_coeff=2.5).",
    ),
    layer: list[int] = typer.Option(
        [], help="Layer for an SAE, repeatable (several SAEs train together); default: middle."
    ),
    hook: str = typer.Option("resid_pre", help="Where at each --layer: resid_pre or resid_post."),
    hook_point: list[str] = typer.Option(
        [], help="Full hook-point name, repeatable, e.g. blocks.6.hook_resid_post."
    ),
    architecture: str = typer.Option("relu", help=H("architecture")),
    arch_option: list[str] = typer.Option(
        [], "--arch-option", help="Architecture option as key=value, repeatable (e.g. k=32)."
    ),
    dict_ratio: float = typer.Option(60.0, help=H("dict_ratio")),
    sparsity_coeff: str = typer.Option(
        "1.0", "--sparsity-coeff", "--lambda",
        help=H("sparsity_coeff") + " Several, comma-separated (0.5,1,2), train one SAE each in "
        "one shared pass, each in its own run directory OUT/lambda<λ>/.",
    ),
    context: int = typer.Option(None, help=H("context")),
    batch_size: int = typer.Option(8, help=H("batch_size")),
    grad_accum: int = typer.Option(None, help=H("grad_accum")),
    n_samples: int = typer.Option(None, help=H("n_samples")),
    lr: float = typer.Option(None, help=H("lr")),
    warmup_fraction: float = typer.Option(0.05, help=H("warmup_fraction")),
    min_lr_ratio: float = typer.Option(0.1, help=H("min_lr_ratio")),
    grad_clip: float = typer.Option(10.0, help=H("grad_clip")),
    seed: int = typer.Option(0, help=H("seed")),
    device: str = typer.Option("auto", help=H("device")),
    dtype: str = typer.Option("fp32", help=H("dtype")),
    compile_: bool = typer.Option(False, "--compile", help=H("compile")),
    log_every: int = typer.Option(10, help=H("log_every")),
    save_every: int = typer.Option(1000, help=H("save_every")),
    keep_checkpoints: int = typer.Option(2, help=H("keep_checkpoints")),
    resume: str = typer.Option(
        None, "--resume", metavar="RUN_DIR",
        help="Continue the run in RUN_DIR from its latest checkpoint, with the settings in its "
        "config.json; only --device, --save-every and --keep-checkpoints may be given again.",
    ),
    out: str = typer.Option(None, "--out", help=H("output_dir")),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run dir and last metrics as JSON."
    ),
) -> None:
    """Train SAEs on a model's residual stream (default: e2e on the built-in model)."""
    ctx.call_on_close(_leave_process_group)
    if resume:
        runs, start = _resume(ctx, resume)
        _fit(runs, start, as_json, Path(resume))
        return
    lambdas = parse_floats(sparsity_coeff, "--lambda")
    if hook not in ("resid_pre", "resid_post"):
        raise SaeKitError(f"--hook must be resid_pre or resid_post, got {hook!r}")
    points = [HookPoint(n, hook).name for n in layer]  # type: ignore[arg-type]
    points += [HookPoint.parse(h).name for h in hook_point]
    config = TrainConfig(
        model=model, revision=revision, dataset=dataset, split=split, eval_split=eval_split,
        text_column=text_column, loss=loss,
        loss_options=parse_key_values(loss_option, "--loss-option"),
        hook_points=list(dict.fromkeys(points)), architecture=architecture,
        architecture_options=parse_key_values(arch_option, "--arch-option"), dict_ratio=dict_ratio,
        sparsity_coeff=lambdas[0], context=context, batch_size=batch_size,
        grad_accum=grad_accum, n_samples=n_samples, lr=lr, warmup_fraction=warmup_fraction,
        min_lr_ratio=min_lr_ratio, grad_clip=grad_clip if grad_clip > 0 else None, seed=seed,
        device=device, dtype=dtype, compile=compile_, log_every=log_every, output_dir=out,
        save_every=save_every, keep_checkpoints=keep_checkpoints,
    )
    from sae_kit.train.group import build_group, lambda_group, write_manifest

    if len(lambdas) == 1:
        group_dir, configs = None, [config]
    else:
        group_dir, configs = lambda_group(config, lambdas)
    runs = build_group(configs)  # every input error surfaces here, before any progress output
    if group_dir is not None and runs[0].dist.is_main:
        write_manifest(group_dir, runs)
    _fit(runs, None, as_json, group_dir)


def _leave_process_group() -> None:
    if "torch.distributed" in sys.modules:  # only a run that imported torch can have joined one
        from sae_kit.train.distributed import teardown

        teardown()


def _resume(ctx: typer.Context, run_dir: str) -> tuple[list[Run], TrainState]:
    """Rebuild a run from RUN_DIR; options other than the few allowed are refused, not ignored."""
    from sae_kit.train.group import is_group
    from sae_kit.train.resume import RESUME_OVERRIDES, resume, resume_group

    # Typer vendors click, so compare the ParameterSource by name.
    sources = {name: getattr(ctx.get_parameter_source(name), "name", "") for name in ctx.params}
    given = {name for name, source in sources.items() if source in ("COMMANDLINE", "ENVIRONMENT")}
    given -= {"resume", "as_json"}
    refused = sorted(given - set(RESUME_OVERRIDES))
    if refused:
        flags = {p.name: p.opts[0] for p in ctx.command.params}
        raise SaeKitError(
            f"--resume takes its settings from {run_dir}/config.json; drop "
            f"{', '.join(flags[name] for name in refused)} (only --device, --save-every and "
            "--keep-checkpoints may be given again)"
        )

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    overrides = {name: ctx.params[name] for name in given}
    if is_group(run_dir):
        return resume_group(run_dir, **overrides)
    run, start = resume(run_dir, warn=warn, **overrides)
    return [run], start


def _fit(runs: list[Run], start: TrainState | None, as_json: bool,
         group_dir: Path | None = None) -> None:
    from sae_kit.train.loop import fit
    from sae_kit.train.signals import Interrupted

    run = runs[0]
    main = run.dist.is_main  # only rank 0 prints
    last: dict[str, Any] = {}
    with _progress(disable=not main) as progress:
        task = progress.add_task("training", total=run.total_steps,
                                 completed=start.step if start else 0, status="")

        def on_step(step: int, total: int, row: dict[str, Any] | None) -> None:
            if row:
                last.clear()
                last.update(row)
            progress.update(task, completed=step, total=total, status=_status(last))

        try:
            run_dir = fit(runs, on_step=on_step, start=start, group_dir=group_dir)
        except Interrupted as stop:
            progress.stop()
            if main:
                err.print(f"[yellow]{escape(str(stop))}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None
    if not main:
        return
    if start and start.step >= run.total_steps:
        err.print(f"[green]done[/]: all {run.total_steps} steps were already trained")
    else:
        err.print(f"[green]done[/]: {_status(last)}")
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), "metrics": last}))
    else:
        typer.echo(str(run_dir))


def _progress(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=err,
        disable=disable,
    )


def _status(row: dict[str, Any]) -> str:
    if not row:
        return ""
    l0 = [f"{v:.1f}" for k, v in row.items() if k.startswith("l0/")]
    return (f"{row['tokens_per_s']:,.0f} tok/s  loss {row['loss']:.4f}  "
            f"L0 {'/'.join(l0)}")
