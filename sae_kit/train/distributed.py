"""Data-parallel training on PyTorch distributed, launched by ``torchrun``.

    torchrun --nproc-per-node 4 -m sae_kit train --model gpt2 --layer 6 ...

Each rank holds the same frozen model and the same SAEs, reads its own shard of the data (rank
r of N takes global windows r, r+N, r+2N, ...) and computes its loss; DistributedDataParallel
averages the SAE gradients over ranks, so one step sees a global batch of N x --batch-size x
--grad-accum samples and every rank applies the same update. Only rank 0 writes files and
prints progress. Without torchrun's environment (WORLD_SIZE unset or 1) all of this is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from sae_kit.errors import SaeKitError, first_line
from sae_kit.losses.base import Loss, LossResult
from sae_kit.model.hookpoints import HookPoint, Site
from sae_kit.model.splice import Splice

if TYPE_CHECKING:
    from sae_kit.train.stats import StepStats


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def max(self, value: int, device: torch.device) -> int:
        """The largest ``value`` over all ranks, on every rank (so all ranks act together)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], device=device, dtype=torch.int64)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return int(tensor.item())

    def any_each(self, flags: Sequence[bool], device: torch.device) -> list[bool]:
        """Per position, True on every rank when that flag is true on any rank."""
        if not self.enabled:
            return list(flags)
        tensor = torch.tensor([int(f) for f in flags], device=device, dtype=torch.int64)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in tensor.tolist()]

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def from_env(env: Mapping[str, str] | None = None) -> Dist:
    """Rank and world size from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK)."""
    env = os.environ if env is None else env
    try:
        values = {key: int(env.get(key, default)) for key, default in
                  (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"))}
    except ValueError:
        raise SaeKitError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers; launch with torchrun"
        ) from None
    if not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise SaeKitError(f"RANK={values['RANK']} is outside WORLD_SIZE={values['WORLD_SIZE']}")
    return Dist(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA).

    Under torchrun each rank uses the GPU numbered by its LOCAL_RANK, so ``--device cuda`` or
    ``auto`` is right and a fixed ``cuda:N`` is refused (every rank would share one GPU).
    """
    dist = from_env()
    if not dist.enabled:
        return dist, device
    if device.type == "cuda":
        if device.index is not None:
            raise SaeKitError(
                f"--device {device} under torchrun would put every rank on one GPU; use "
                "--device cuda (each rank takes the GPU of its LOCAL_RANK)"
            )
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)  # env://: MASTER_ADDR, MASTER_PORT, ...
    return dist, device


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class _Objective(nn.Module):
    """The SAEs as one module whose forward is the loss, so DDP sees every SAE parameter."""

    def __init__(self, saes: Mapping[HookPoint, nn.Module], loss: Loss) -> None:
        super().__init__()
        self.saes = nn.ModuleList(saes.values())
        self.loss = loss

    def forward(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
        return self.loss(splice, input_ids)


class DataParallelLoss(Loss):
    """A Loss that calls the wrapped one through DistributedDataParallel.

    It is the same objective, so it answers as that loss does (name, options, lambda, what it
    reads of the clean pass); only the call goes through DDP.
    """

    def __init__(self, saes: Mapping[HookPoint, nn.Module], loss: Loss,
                 device: torch.device) -> None:
        # Not Loss.__init__: the options were parsed when ``loss`` was made.
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # Wrapping broadcasts rank 0's SAE weights, so all ranks start identical.
        self.ddp = DistributedDataParallel(_Objective(saes, loss), device_ids=ids)
        self.wrapped = loss
        """The loss itself (its state is checkpointed, see sae_kit.train.run)."""
        self.name = loss.name  # type: ignore[misc]  # the wrapped loss's, per instance
        self.sparsity_coeff = loss.sparsity_coeff
        self.opts = loss.opts

    def clean_needs(self, splice: Splice) -> tuple[list[Site], bool]:
        return self.wrapped.clean_needs(splice)

    def __call__(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
        return self.ddp(splice, input_ids)

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager:
        # Gradients of earlier micro-batches accumulate locally; the last backward all-reduces.
        return contextlib.nullcontext() if last else self.ddp.no_sync()


def data_parallel(loss: Loss, saes: Mapping[HookPoint, nn.Module], dist: Dist,
                  device: torch.device) -> Loss:
    """The loss to train with: ``loss`` itself on one process, a DDP wrapper under torchrun."""
    return DataParallelLoss(saes, loss, device) if dist.enabled else loss


def micro_batch(loss: Loss, last: bool) -> contextlib.AbstractContextManager:
    """Context for one micro-batch's forward and backward (DDP syncs only on the last)."""
    if isinstance(loss, DataParallelLoss):
        return loss.micro_batch(last)
    return contextlib.nullcontext()


def reduce_stats(stats: StepStats, dist: Dist, device: torch.device) -> None:
    """Combine every rank's running metrics in place, so rank 0 logs the global batch."""
    if not dist.enabled:
        return
    import torch.distributed as td

    keys = sorted(stats.sums)
    sums = torch.tensor([stats.sums[k] for k in keys] + [stats.tokens], device=device,
                        dtype=torch.float64)
    td.all_reduce(sums)
    for i, key in enumerate(keys):
        stats.sums[key] = sums[i].item() / dist.world_size  # ranks see equal micro-batch counts
    stats.tokens = int(sums[-1].item())
    for key in sorted(stats.fired):
        fired = stats.fired[key].to(device=device, dtype=torch.uint8)
        td.all_reduce(fired, op=td.ReduceOp.MAX)  # alive anywhere = alive
        stats.fired[key] = fired.bool()



_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
              "Socket Timeout", "Timed out waiting", "gloo", "NCCL")


def peer_failure(exc: BaseException, dist: Dist) -> SaeKitError | None:
    """One line for a collective that failed because another rank died; None otherwise.

    When one torchrun rank stops (an error, a kill), the others' next all-reduce raises deep in
    the communication backend with a long traceback; the useful news is that a peer is gone,
    and its own error (printed by that rank) says why.
    """
    if dist.world_size < 2:
        return None
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(exc)
    if not (isinstance(exc, dist_error) or any(marker in text for marker in _PEER_GONE)):
        return None
    first = first_line(exc)
    return SaeKitError(
        f"rank {dist.rank}: another process of this torchrun job stopped, so training cannot "
        f"go on ({type(exc).__name__}: {first[:200]}); see that rank's own error above, and "
        "resume from the last checkpoint with `torchrun ... -m sae_kit train --resume RUN_DIR`"
    )
