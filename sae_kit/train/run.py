"""The run object: everything one training run holds, and its state in and out of a checkpoint.

``sae_kit.train.build`` makes a :class:`Run` from a TrainConfig; ``sae_kit.train.loop`` fits it;
:func:`capture` and :func:`apply` move the state that is not derived from the config (SAE
weights, Adam moments, schedule, RNGs) to and from the tree a checkpoint stores. The checkpoint
module itself only reads and writes trees, so it never needs this module.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError, first_line
from sae_kit.losses.base import Loss
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import LoadedModel
from sae_kit.model.lora import Lora
from sae_kit.model.splice import Splice
from sae_kit.record.config import TrainConfig
from sae_kit.record.run_record import Resolved, RunRecord
from sae_kit.store.run_dir import RunDir
from sae_kit.train.checkpoint import Checkpoint
from sae_kit.train.distributed import Dist


@dataclass
class Run:
    """Everything one training run holds, built from a TrainConfig."""

    config: TrainConfig
    """The resolved settings: every default filled in, as config.json records them."""
    resolved: Resolved
    """What the settings came to on this model and machine (context, steps, sizes, device)."""
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
    lock: Any = None
    """The run directory's lock (sae_kit.store.run_lock) while this process trains it."""
    lora: Lora | None = None
    """``--lora``: the adapters that train (the SAEs are frozen)."""

    @property
    def total_steps(self) -> int:
        return self.resolved.total_steps

    @property
    def record(self) -> RunRecord:
        """What config.json stores: the settings and what they resolved to."""
        return RunRecord(self.config, self.resolved)

    @property
    def layout(self) -> RunDir:
        """The run directory's file names."""
        return RunDir(self.run_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return self.layout.checkpoints


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every random-number generator training may draw from."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def capture(run: Run) -> dict[str, Any]:
    """The training state of ``run`` that is not derived from its config: the checkpoint tree."""
    return {
        "saes": {hp.name: sae.state_dict() for hp, sae in run.saes.items()},
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_state(run.device),
        **_loss_state(run.loss),
        **({"lora": run.lora.state_dict()} if run.lora else {}),
    }


def _loss_state(loss: Loss) -> dict[str, Any]:
    """A loss that adapts during training (kl+mse's balancing) keeps its state in checkpoints;
    the others add nothing, so their checkpoints stay as they were."""
    inner = getattr(loss, "wrapped", loss)  # under torchrun, the DDP wrapper holds the loss
    state = getattr(inner, "state_dict", None)
    return {"loss": state()} if callable(state) else {}


def apply(run: Run, checkpoint: Checkpoint) -> None:
    """Put a checkpoint's state into a freshly built ``run`` (same config).

    Every part is replaced, so a checkpoint that fails half-way (SaeKitError) leaves nothing
    that the next one applied does not overwrite.
    """
    tree = checkpoint.tree
    try:
        saved = tree["saes"]
        if sorted(saved) != sorted(hp.name for hp in run.saes):
            raise ValueError(f"it holds SAEs at {sorted(saved)}")
        for hp, sae in run.saes.items():
            sae.load_state_dict(saved[hp.name])
        run.optimizer.load_state_dict(tree["optimizer"])
        run.scheduler.load_state_dict(tree["scheduler"])
        set_rng_state(tree["rng"], run.device)
        if "loss" in tree:
            getattr(run.loss, "wrapped", run.loss).load_state_dict(tree["loss"])
        if run.lora is not None:
            run.lora.load_state_dict(tree["lora"])  # KeyError: a checkpoint without adapters
    except Exception as exc:  # whatever the damage, this checkpoint is unusable
        raise SaeKitError(
            f"checkpoint {str(checkpoint.path)!r} does not fit this run's config.json "
            f"({first_line(exc)})"
        ) from None
