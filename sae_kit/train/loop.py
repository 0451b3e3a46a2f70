"""The training loop. It knows no loss and no model family: both are plugins.

    sae-kit train --loss e2e --layer 2          # the CLI builds a TrainConfig and calls train()

``sae_kit.train.build`` makes the :class:`~sae_kit.train.run.Run`; this module fits it: one
optimizer step, metrics, checkpoints, and the SAE directories at the end.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sae_kit import __version__
from sae_kit.errors import SaeKitError
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.store.sae_dir import save_sae
from sae_kit.train import checkpoint, distributed, precision
from sae_kit.train.build import build_run
from sae_kit.train.checkpoint import TrainState
from sae_kit.train.config import TrainConfig
from sae_kit.train.nonfinite import NonFinite, nonfinite_term, stop_error
from sae_kit.train.run import Run, capture
from sae_kit.train.signals import Interrupted, stop_on_signals
from sae_kit.train.stats import MetricsLog, StepStats


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
        save_sae(sae, hp, run.layout.sae(hp), extra)


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
        run.layout.metrics.unlink(missing_ok=True)
    write_json_atomic(run.layout.config, {**run.config.to_dict(), "resolved": run.resolved})
    return MetricsLog(run.layout.metrics)


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
    metrics = run.layout.metrics
    counters = dataclasses.replace(
        state, metrics_offset=metrics.stat().st_size if metrics.exists() else 0
    )
    return checkpoint.save(run.checkpoint_dir, counters, capture(run),
                           run.config.keep_checkpoints)
