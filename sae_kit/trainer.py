"""The training loop. It knows no loss and no model family: both are plugins.

    sae-kit train --loss e2e --layer 2          # the CLI builds a TrainConfig and calls train()
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit import plugins, precision
from sae_kit.architectures.base import SAE
from sae_kit.builtin import BUILTIN_MODEL_NAME
from sae_kit.config import TrainConfig
from sae_kit.data import DataSpec, batches, training_windows
from sae_kit.errors import SaeKitError
from sae_kit.hookpoints import HookPoint
from sae_kit.losses.base import Loss
from sae_kit.models import LoadedModel, load_model
from sae_kit.sae_io import save_sae, write_json_atomic
from sae_kit.schedule import warmup_cosine
from sae_kit.splice import Splice
from sae_kit.train_metrics import MetricsLog, StepStats

PAPER_SAMPLES = 400_000
BUILTIN_SAMPLES = 4_000  # a few minutes on a 2-core CPU with the built-in model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SaeKitError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SaeKitError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


@dataclass
class Run:
    """Everything one training run holds, built from a TrainConfig."""

    config: TrainConfig
    resolved: dict[str, Any]
    loaded: LoadedModel
    saes: dict[HookPoint, SAE]
    splice: Splice
    loss: Loss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    data: Iterator[torch.Tensor]
    run_dir: Path
    device: torch.device

    @property
    def total_steps(self) -> int:
        return int(self.resolved["total_steps"])


def build_run(config: TrainConfig) -> Run:
    """Load the model, make the SAEs, optimizer, schedule and data; validate everything first."""
    loss_cls = plugins.load("losses", config.loss)
    loss = loss_cls(config.sparsity_coeff, **config.loss_options)
    arch = plugins.load("architectures", config.architecture)
    hook_points = [HookPoint.parse(name) for name in config.hook_points]
    device = resolve_device(config.device)
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
    total_steps = math.ceil(n_samples / config.samples_per_step)
    n_dict = max(1, round(config.dict_ratio * loaded.d_model))

    torch.manual_seed(config.seed)
    saes = {hp: arch(loaded.d_model, n_dict).to(device) for hp in hook_points}
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
    data = batches(training_windows(spec, loaded.tokenizer, context, config.seed),
                   config.batch_size)
    data = itertools.chain([next(data)], data)  # surface dataset errors now, not mid-progress
    resolved = {
        "context": context, "n_samples": n_samples, "total_steps": total_steps,
        "warmup_steps": warmup, "d_model": loaded.d_model, "n_dict": n_dict,
        "n_layers": loaded.n_layers, "model_type": loaded.model.config.model_type,
        "device": str(device),
    }
    return Run(config, resolved, loaded, saes, Splice(loaded.model, loaded.adapter, saes), loss,
               optimizer, scheduler, data, _run_dir(config), device)


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
    """One optimizer step over grad_accum micro-batches; returns the gradient norm."""
    accum = run.config.grad_accum
    for _ in range(accum):
        input_ids = next(run.data).to(run.device)
        with precision.autocast(run.device, run.config.dtype):
            result = run.loss(run.splice, input_ids)
        (result.loss / accum).backward()
        stats.add(result, input_ids.numel())
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    max_norm = run.config.grad_clip or float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
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
    }
    for hp, sae in run.saes.items():
        save_sae(sae, hp, run.run_dir / hp.name, extra)


ProgressCallback = Callable[[int, int, "dict[str, Any] | None"], None]


def train(config: TrainConfig, on_step: ProgressCallback | None = None) -> Path:
    """Build the run from ``config`` and fit it; returns the run directory."""
    return fit(build_run(config), on_step)


def fit(run: Run, on_step: ProgressCallback | None = None) -> Path:
    """Train the SAEs and write the run directory; returns its path.

    ``on_step(step, total_steps, record)`` is called after every optimizer step; ``record`` is
    the metrics row when one was written at that step, else None.
    """
    config = run.config
    run.run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.run_dir / "config.json", {**config.to_dict(), "resolved": run.resolved})
    log = MetricsLog(run.run_dir / "metrics.jsonl")
    stats = StepStats()
    tokens_per_step = run.config.samples_per_step * run.resolved["context"]
    for step in range(run.total_steps):
        lr = run.scheduler.get_last_lr()[0]
        grad_norm = train_step(run, stats)
        last = step == run.total_steps - 1
        row = None
        if step % config.log_every == 0 or last:
            row = stats.record(step=step + 1, tokens=(step + 1) * tokens_per_step, lr=lr,
                               grad_norm=grad_norm, total_steps=run.total_steps)
            log.write(row)
        if on_step:
            on_step(step + 1, run.total_steps, row)
    save_saes(run, run.total_steps * tokens_per_step)
    return run.run_dir
