"""The training loop. It knows no loss and no model family: both are plugins.

    sae-kit train --loss e2e --layer 2          # the CLI builds a TrainConfig and calls train()
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sae_kit import __version__, plugins
from sae_kit.architectures.base import SAE
from sae_kit.builtin import BUILTIN_MODEL_NAME
from sae_kit.data import DataSpec, training_batches
from sae_kit.errors import SaeKitError
from sae_kit.losses.base import Loss
from sae_kit.model.device import resolve_device
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import LoadedModel, load_model
from sae_kit.model.splice import Splice
from sae_kit.options import parse_options
from sae_kit.store.sae_dir import save_sae, write_json_atomic
from sae_kit.train import checkpoint, distributed, precision
from sae_kit.train.checkpoint import TrainState
from sae_kit.train.config import TrainConfig
from sae_kit.train.distributed import Dist
from sae_kit.train.nonfinite import NonFinite, nonfinite_term, stop_error
from sae_kit.train.schedule import warmup_cosine
from sae_kit.train.signals import Interrupted, stop_on_signals
from sae_kit.train.stats import MetricsLog, StepStats

PAPER_SAMPLES = 400_000
# The built-in model's default run must finish in a few minutes on a 2-core CPU: ~200k tokens
# (2 passes over its text). The paper's lr and 16-sample steps sparsify too slowly for that, so
# it takes 100 steps of 8 samples at 4x the lr (measured: docs/method.md).
BUILTIN_SAMPLES = 800
_DEFAULTS = {"lr": (5e-4, 2e-3), "grad_accum": (2, 1)}  # setting: (paper, built-in model)



@dataclass
class Run:
    """Everything one training run holds, built from a TrainConfig."""

    config: TrainConfig
    resolved: dict[str, Any]
    loaded: LoadedModel
    saes: dict[HookPoint, SAE]
    splice: Splice
    loss: Loss
    """The objective; under torchrun, wrapped so DDP averages the SAE gradients over ranks."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: Iterator[torch.Tensor]
    run_dir: Path
    device: torch.device
    dist: Dist = field(default_factory=Dist)

    @property
    def total_steps(self) -> int:
        return int(self.resolved["total_steps"])

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def build_run(config: TrainConfig, skip_windows: int = 0) -> Run:
    """Load the model, make the SAEs, optimizer, schedule and data; validate everything first.

    Under torchrun this joins the process group; ``skip_windows`` (a resumed run) starts the
    data that many global windows in.
    """
    for name, (paper, builtin) in _DEFAULTS.items():  # unset: the saved config gets the value
        if getattr(config, name) is None:
            setattr(config, name, builtin if config.model == BUILTIN_MODEL_NAME else paper)
    loss_cls = plugins.load("losses", config.loss)
    loss = loss_cls(config.sparsity_coeff, **config.loss_options)
    arch = plugins.load("architectures", config.architecture)
    # Typed, defaults filled in: the saved config records the options the run really used.
    arch_options = parse_options(arch.Options, config.architecture_options, arch.name)
    config.architecture_options = dataclasses.asdict(arch_options)
    hook_points = [HookPoint.parse(name) for name in config.hook_points]
    dist, device = distributed.setup(resolve_device(config.device))
    precision.configure_backends(device)

    loaded = load_model(config.model, revision=config.revision, device=device)
    if not hook_points:
        hook_points = [HookPoint(loaded.n_layers // 2, "resid_pre")]
        config.hook_points = [hook_points[0].name]
    for hp in hook_points:
        hp.check(loaded.n_layers)
    context = _context(config, loaded)
    n_samples = config.n_samples or (
        BUILTIN_SAMPLES if config.model == BUILTIN_MODEL_NAME else PAPER_SAMPLES
    )
    total_steps = math.ceil(n_samples / (config.samples_per_step * dist.world_size))
    n_dict = max(1, round(config.dict_ratio * loaded.d_model))

    torch.manual_seed(config.seed)
    saes = {hp: arch(loaded.d_model, n_dict, **config.architecture_options).to(device)
            for hp in hook_points}
    if config.compile:
        precision.compile_modules([(hp.name, sae) for hp, sae in saes.items()],
                                  precision.warn_stderr)
    params = [p for sae in saes.values() for p in sae.parameters()]
    optimizer = precision.adam(params, lr=config.lr)
    warmup = round(config.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, warmup, config.min_lr_ratio)
    )
    spec = DataSpec(config.dataset, config.split, config.eval_split, config.text_column)
    data = training_batches(spec, loaded.tokenizer, context, config.seed, config.batch_size,
                            skip=skip_windows, rank=dist.rank, world_size=dist.world_size)
    data = itertools.chain([next(data)], data)  # surface dataset errors now, not mid-progress
    resolved = {
        "context": context, "n_samples": n_samples, "total_steps": total_steps,
        "warmup_steps": warmup, "d_model": loaded.d_model, "n_dict": n_dict,
        "n_layers": loaded.n_layers, "model_type": loaded.model.config.model_type,
        "adapter": loaded.adapter.describe(loaded.model),
        "device": str(device), "world_size": dist.world_size,
    }
    objective = distributed.data_parallel(loss, saes, dist, device)
    return Run(config, resolved, loaded, saes, Splice(loaded.model, loaded.adapter, saes),
               objective, optimizer, scheduler, data, _run_dir(config), device, dist)


def _context(config: TrainConfig, loaded: LoadedModel) -> int:
    limit = loaded.max_positions
    if config.context is None:
        return min(1024, limit) if limit else 1024
    if limit and config.context > limit:
        raise SaeKitError(
            f"context {config.context} is longer than this model's {limit} positions; "
            f"use --context {limit} or less"
        )
    return config.context


def _run_dir(config: TrainConfig) -> Path:
    if config.output_dir:
        return Path(config.output_dir)
    model = Path(config.model.rstrip("/")).name
    return Path("runs") / f"{model}-{config.loss}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_step(run: Run, stats: StepStats) -> float:
    """One optimizer step over grad_accum micro-batches; returns the gradient norm.

    Raises NonFinite, before the update, when a loss term or the gradient is NaN or infinite.
    """
    accum = run.config.grad_accum
    bad = None
    for i in range(accum):
        input_ids = next(run.data).to(run.device)
        with distributed.micro_batch(run.loss, last=i == accum - 1):
            with precision.autocast(run.device, run.config.dtype):
                result = run.loss(run.splice, input_ids)
            (result.loss / accum).backward()
        stats.add(result, input_ids.numel())
        bad = bad or nonfinite_term(result)
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    max_norm = run.config.grad_clip or float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    if not math.isfinite(grad_norm):
        bad = bad or f"gradient (norm {grad_norm})"
    if run.dist.any(bad is not None, run.device):  # every rank stops at the same step
        run.optimizer.zero_grad(set_to_none=True)
        raise NonFinite(bad or "loss or gradient on another rank")
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    return grad_norm


def save_saes(run: Run, tokens: int) -> None:
    extra = {
        "model": run.config.model, "revision": run.config.revision,
        "model_type": run.resolved["model_type"], "loss": run.config.loss,
        "sparsity_coeff": run.config.sparsity_coeff, "dataset": run.config.dataset,
        "context": run.resolved["context"], "tokens_trained": tokens,
        "loss_options": run.config.loss_options, "sae_kit_version": __version__,
    }
    for hp, sae in run.saes.items():
        save_sae(sae, hp, run.run_dir / hp.name, extra)


ProgressCallback = Callable[[int, int, "dict[str, Any] | None"], None]


def train(config: TrainConfig, on_step: ProgressCallback | None = None) -> Path:
    """Build the run from ``config`` and fit it; returns the run directory."""
    return fit(build_run(config), on_step)


def fit(
    run: Run, on_step: ProgressCallback | None = None, start: TrainState | None = None
) -> Path:
    """Train the SAEs and write the run directory; returns its path.

    ``on_step(step, total_steps, record)`` is called after every optimizer step; ``record`` is
    the metrics row when one was written at that step, else None. ``start`` is where a resumed
    run stands (see ``sae_kit.train.resume``). A checkpoint is written every ``save_every``
    steps, at the end, and when SIGINT/SIGTERM arrives (then Interrupted is raised). Only rank 0
    writes.
    """
    state = start or TrainState()
    log = _open_run_dir(run, resuming=start is not None)
    stats = StepStats()
    saved = next(reversed(checkpoint.list_checkpoints(run.checkpoint_dir)), None)
    with stop_on_signals(announce=run.dist.is_main) as stop:
        for step in range(state.step, run.total_steps):
            lr = run.scheduler.get_last_lr()[0]
            try:
                grad_norm = train_step(run, stats)
            except NonFinite as exc:
                raise stop_error(exc.what, step + 1, saved) from None
            state = _advance(run, state)
            row = _log_step(run, log, stats, state, lr, grad_norm)
            if on_step:
                on_step(state.step, run.total_steps, row)
            signum = run.dist.max(stop.signum or 0, run.device)  # ranks stop at the same step
            if signum or state.step % run.config.save_every == 0 or step == run.total_steps - 1:
                saved = save_checkpoint(run, state)
            if signum:
                run.dist.barrier()  # rank 0's checkpoint is complete before anyone exits
                raise Interrupted(signum, run.run_dir, state.step, saved, run.dist.world_size)
    if run.dist.is_main:
        save_saes(run, state.tokens)
    run.dist.barrier()
    return run.run_dir


def _open_run_dir(run: Run, resuming: bool) -> MetricsLog | None:
    """Write config.json and open the metrics log, on rank 0 only."""
    if not resuming and checkpoint.list_checkpoints(run.checkpoint_dir):
        raise SaeKitError(
            f"{str(run.run_dir)!r} already holds checkpoints of a run; continue it with "
            f"`sae-kit train --resume {run.run_dir}` or choose another --out"
        )
    if not run.dist.is_main:
        return None
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:  # rows of an earlier run that saved no checkpoint belong to no run now
        (run.run_dir / "metrics.jsonl").unlink(missing_ok=True)
    write_json_atomic(run.run_dir / "config.json",
                      {**run.config.to_dict(), "resolved": run.resolved})
    return MetricsLog(run.run_dir / "metrics.jsonl")


def _advance(run: Run, state: TrainState) -> TrainState:
    windows = run.config.samples_per_step * run.dist.world_size  # global, over all ranks
    return dataclasses.replace(state, step=state.step + 1, windows=state.windows + windows,
                               tokens=state.tokens + windows * run.resolved["context"])


def _log_step(run: Run, log: MetricsLog | None, stats: StepStats, state: TrainState,
              lr: float, grad_norm: float) -> dict[str, Any] | None:
    if (state.step - 1) % run.config.log_every and state.step != run.total_steps:
        return None
    distributed.reduce_stats(stats, run.dist, run.device)
    row = stats.record(step=state.step, tokens=state.tokens, lr=lr, grad_norm=grad_norm,
                       total_steps=run.total_steps)
    if log:
        log.write(row)
    return row


def save_checkpoint(run: Run, state: TrainState) -> Path:
    """Write a checkpoint of ``run`` at ``state`` (rank 0; the others just name it)."""
    if not run.dist.is_main:
        return run.checkpoint_dir / checkpoint.checkpoint_name(state.step)
    metrics = run.run_dir / "metrics.jsonl"
    counters = dataclasses.replace(
        state, metrics_offset=metrics.stat().st_size if metrics.exists() else 0
    )
    return checkpoint.save(run.checkpoint_dir, counters, checkpoint.capture(run),
                           run.config.keep_checkpoints)
