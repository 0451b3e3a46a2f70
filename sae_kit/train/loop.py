"""The training loop. It knows no loss and no model family: both are plugins.

    sae-kit train --loss e2e --layer 2          # the CLI builds the run and calls fit()

``sae_kit.train.build`` makes the :class:`~sae_kit.train.run.Run`; this module fits it: one
optimizer step, metrics, checkpoints, and the SAE directories at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError, full_disk
from sae_kit.store.files import save_tensors
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.store.run_lock import claim_new_dir, lock_run, unwritable_run_dir
from sae_kit.store.sae_dir import save_sae
from sae_kit.trackers.base import open_trackers
from sae_kit.train import checkpoint, distributed, precision
from sae_kit.train.checkpoint import TrainState
from sae_kit.train.nonfinite import (
    MembersStopped,
    nonfinite_term,
    record_failure,
    stop_error,
)
from sae_kit.train.run import Run, capture
from sae_kit.train.signals import Interrupted, stop_on_signals
from sae_kit.train.stats import HostValues, MetricsLog, StepStats
from sae_kit.version import __version__

logger = logging.getLogger("sae_kit.train")


def train_step(runs: Sequence[Run], stats: Sequence[StepStats]
               ) -> tuple[list[float], dict[int, str]]:
    """One optimizer step of each run over the same grad_accum micro-batches.

    Several runs share a step when trained in one pass (``sae_kit.train.group``): on each
    micro-batch every run in turn computes its loss (reading the clean pass they share) and runs
    its backward, so one run's graph is freed before the next is built (peak memory of one run)
    and each SAE gets exactly the gradient it gets alone. Returns the gradient norms and, by
    index, what went NaN or infinite (a loss term or the gradient, on any rank) in the runs that
    got no update; the others were updated.
    """
    lead = runs[0]
    accum = lead.config.grad_accum
    bad: list[str | None] = [None] * len(runs)
    for i in range(accum):
        input_ids = next(lead.data).to(lead.device)
        with lead.splice.batch():  # what the members share of this batch ends with it
            for j, (run, stat) in enumerate(zip(runs, stats, strict=True)):
                with distributed.micro_batch(run.loss, last=i == accum - 1):
                    with precision.autocast(lead.device, lead.config.dtype):
                        result = run.loss(run.splice, input_ids)
                    (result.loss / accum).backward()
                values = HostValues.of(result)  # one device read for the stats and the guard
                stat.add(result, input_ids.numel(), values)
                bad[j] = bad[j] or nonfinite_term(values)
    norms = []
    for j, run in enumerate(runs):
        params = [p for group in run.optimizer.param_groups for p in group["params"]]
        norm = float(torch.nn.utils.clip_grad_norm_(params, run.config.grad_clip or math.inf))
        if not math.isfinite(norm):
            bad[j] = bad[j] or f"gradient (norm {norm})"
        norms.append(norm)
    # Every rank skips the same runs at the same step, so their weights stay identical.
    agreed = lead.dist.any_each([what is not None for what in bad], lead.device)
    failed = {}
    for j, run in enumerate(runs):
        if agreed[j]:
            failed[j] = bad[j] or "loss or gradient on another rank"
        else:
            run.optimizer.step()
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    return norms, failed


def save_saes(run: Run, tokens: int) -> None:
    extra = {
        "model": run.config.model, "revision": run.config.revision,
        "model_type": run.resolved.model_type, "loss": run.config.loss,
        "sparsity_coeff": run.config.sparsity_coeff, "dataset": run.config.dataset,
        "context": run.resolved.context, "tokens_trained": tokens,
        "loss_options": run.config.loss_options, "sae_kit_version": __version__,
    }
    if run.resolved.init_from is not None:  # where a fine-tune started, in each SAE's config
        extra["init_from"] = dataclasses.asdict(run.resolved.init_from)
    if run.lora is not None:  # before the SAEs: a run with them all is a finished one
        run.lora.save(run.layout.lora, base_model=run.config.model, write_tensors=save_tensors)
    for hp, sae in run.saes.items():
        # lambda weights no penalty of an architecture without one (TopK): record none
        save_sae(sae, hp, run.layout.sae(hp),
                 extra if sae.penalised else {**extra, "sparsity_coeff": None},
                 output=run.splice.outputs[hp])


ProgressCallback = Callable[[int, int, "dict[str, Any] | None"], None]


def fit(
    run: Run | Sequence[Run], on_step: ProgressCallback | None = None,
    start: TrainState | None = None, group_dir: Path | None = None,
) -> Path:
    """Train the SAEs and write the run directory; returns its path.

    ``run`` may be several runs built to share one pass (``sae_kit.train.group``); each writes
    its own directory and ``group_dir`` (returned) is where an interrupted group resumes.
    ``on_step(step, total_steps, record)`` is called after every optimizer step; ``record`` is
    the metrics row when one was written at that step, else None. ``start`` is where a resumed
    run stands (see ``sae_kit.train.resume``). A checkpoint is written every ``save_every``
    steps, at the end, and when SIGINT/SIGTERM arrives (then Interrupted is raised). Only rank 0
    writes.

    A non-finite loss or gradient stops a lone run at once (SaeKitError). Several runs, or a
    run given a ``group_dir`` (a group or sweep member), stop one by one instead: the others
    train to the end and are saved, then MembersStopped names each run that stopped.
    """
    runs = [run] if isinstance(run, Run) else list(run)
    lead = runs[0]
    state = start or TrainState()
    logs: list[MetricsLog | None] = []
    stopped: dict[Path, str] = {}
    stop_alone = len(runs) > 1 or group_dir is not None
    try:
        for r in runs:
            logs.append(_open_run_dir(r, resuming=start is not None))
        group_dir = group_dir or lead.run_dir  # as claimed: a default name may have grown -2
        state, stopped = _steps(runs, logs, state, on_step, group_dir, stop_alone)
        if lead.dist.is_main:
            for r in runs:
                if r.run_dir not in stopped:
                    save_saes(r, state.tokens)
                    r.layout.failed.unlink(missing_ok=True)  # a stopped run resumed alone
    except Exception as exc:  # a full disk while logging or saving: the checkpoints are whole
        line = full_disk(exc, _full_disk_mend(lead, group_dir or lead.run_dir))
        if line is None:
            raise
        raise line from None
    finally:
        for log in logs:
            if log:
                log.close()
        for r in runs:
            if r.lock is not None:  # the next process may take the run from here
                r.lock.release()
                r.lock = None
    lead.dist.barrier()
    if stopped:
        raise MembersStopped(list(stopped.values()))
    return group_dir


def _steps(runs: list[Run], logs: list[MetricsLog | None], state: TrainState,
           on_step: ProgressCallback | None, group_dir: Path, stop_alone: bool
           ) -> tuple[TrainState, dict[Path, str]]:
    """The optimizer steps from ``state`` to the end, with their logs and checkpoints; the end
    state and the error line of each run that stopped on a non-finite step (``stop_alone``)."""
    lead = runs[0]
    log_of = {r.run_dir: log for r, log in zip(runs, logs, strict=True)}
    stats = {r.run_dir: StepStats() for r in runs}
    saved = {r.run_dir: _newest_checkpoint(r) for r in runs}
    stopped: dict[Path, str] = {}
    active = list(runs)
    with stop_on_signals(announce=lead.dist.is_main) as stop:
        for step in range(state.step, lead.total_steps):
            lrs = [r.scheduler.get_last_lr()[0] for r in active]
            norms, bad = train_step(active, [stats[r.run_dir] for r in active])
            for j, what in bad.items():
                r = active[j]
                if not stop_alone:
                    raise stop_error(what, step + 1, saved[r.run_dir])
                stopped[r.run_dir] = _stop_alone(r, what, step + 1, saved[r.run_dir])
            members = [m for j, m in enumerate(zip(active, lrs, norms, strict=True))
                       if j not in bad]
            active = [r for r, _, _ in members]
            if not active:
                break
            state = _advance(lead, state)
            rows = [_log_step(r, log_of[r.run_dir], stats[r.run_dir], lr, norm, state)
                    for r, lr, norm in members]
            if on_step:
                on_step(state.step, lead.total_steps, _progress_row(active, rows))
            signum = lead.dist.max(stop.signum or 0, lead.device)  # ranks stop at the same step
            if signum or state.step % lead.config.save_every == 0 or step == lead.total_steps - 1:
                saved.update({r.run_dir: save_checkpoint(r, state) for r in active})
                for r in active:  # only now: a kill between two members' saves must leave
                    if r.dist.is_main:  # a step they all hold, even with keep_checkpoints=1
                        checkpoint.prune(r.checkpoint_dir, r.config.keep_checkpoints)
            if signum:
                lead.dist.barrier()  # rank 0's checkpoint is complete before anyone exits
                raise Interrupted(signum, group_dir, state.step, saved[active[0].run_dir],
                                  lead.dist.world_size)
    return state, stopped


def _full_disk_mend(lead: Run, resume_dir: Path) -> str:
    if _newest_checkpoint(lead) is None:
        return "no checkpoint was written yet: free disk space, then run the command again"
    return ("the checkpoints written are intact: free disk space, then continue with "
            f"`sae-kit train --resume {resume_dir}`")


def _newest_checkpoint(run: Run) -> Path | None:
    return next(reversed(checkpoint.list_checkpoints(run.checkpoint_dir)), None)


def _stop_alone(run: Run, what: str, step: int, saved: Path | None) -> str:
    """Record in ``run``'s directory that it stopped (rank 0); its one error line."""
    error = str(stop_error(f"{what} in {run.run_dir}", step, saved))
    if run.dist.is_main:
        record_failure(run.run_dir, step, what, error)
        logger.warning("%s; the other runs go on", error)
    return error


def _progress_row(runs: Sequence[Run], rows: Sequence[dict[str, Any] | None]
                  ) -> dict[str, Any] | None:
    """A lone run's metrics row, or a group's rows side by side: ``loss@RUN`` and
    ``l0/HOOK@RUN`` per member (a sum of the members' losses would mean nothing)."""
    if len(rows) == 1 or rows[0] is None:
        return rows[0]
    combined = {"tokens_per_s": rows[0]["tokens_per_s"]}
    for run, row in zip(runs, rows, strict=True):
        combined.update({f"{k}@{run.run_dir.name}": v for k, v in row.items()
                         if k == "loss" or k.startswith("l0/")})
    return combined


def _open_run_dir(run: Run, resuming: bool) -> MetricsLog | None:
    """Claim the run directory (its lock), write config.json, open the metrics log (rank 0)."""
    if not resuming and run.config.output_dir and checkpoint.list_checkpoints(run.checkpoint_dir):
        raise _taken(run)  # every rank says so: none starts training alone
    if not run.dist.is_main:
        return None
    try:
        if run.config.output_dir is None and not resuming:
            run.run_dir = claim_new_dir(run.run_dir)  # never one another run is using
        run.run_dir.mkdir(parents=True, exist_ok=True)
        if run.lock is None:
            run.lock = lock_run(run.run_dir)
        if not resuming and checkpoint.list_checkpoints(run.checkpoint_dir):
            raise _taken(run)  # written since the check above, by a run that now let go
        logger.info("run directory: %s", run.run_dir)
        if not resuming:  # rows of an earlier run that saved no checkpoint belong to no run now
            run.layout.metrics.unlink(missing_ok=True)
        write_json_atomic(run.layout.config, run.record.to_json())
    except OSError as exc:  # read-only, a path under a file, /proc, ...
        raise unwritable_run_dir(run.run_dir, exc) from None
    trackers = open_trackers(run.config.trackers, run.run_dir, run.config.to_dict())
    return MetricsLog(run.layout.metrics, trackers)


def _taken(run: Run) -> SaeKitError:
    return SaeKitError(
        f"{str(run.run_dir)!r} already holds checkpoints of a run; continue it with "
        f"`sae-kit train --resume {run.run_dir}` or choose another --out"
    )


def _advance(run: Run, state: TrainState) -> TrainState:
    windows = run.config.samples_per_step * run.dist.world_size  # global, over all ranks
    return dataclasses.replace(state, step=state.step + 1, windows=state.windows + windows,
                               tokens=state.tokens + windows * run.resolved.context)


def _log_step(run: Run, log: MetricsLog | None, stats: StepStats, lr: float, grad_norm: float,
              state: TrainState) -> dict[str, Any] | None:
    if (state.step - 1) % run.config.log_every and state.step != run.total_steps:
        return None
    distributed.reduce_stats(stats, run.dist, run.device)
    row = stats.record(step=state.step, tokens=state.tokens, lr=lr, grad_norm=grad_norm,
                       total_steps=run.total_steps)
    if log:
        log.write(row)
    return row


def save_checkpoint(run: Run, state: TrainState) -> Path:
    """Write a checkpoint of ``run`` at ``state`` (rank 0; the others just name it); the caller
    prunes old ones once every member of the pass has saved."""
    if not run.dist.is_main:
        return run.checkpoint_dir / checkpoint.checkpoint_name(state.step)
    metrics = run.layout.metrics
    counters = dataclasses.replace(
        state, metrics_offset=metrics.stat().st_size if metrics.exists() else 0
    )
    return checkpoint.save(run.checkpoint_dir, counters, capture(run),
                           keep=None)
