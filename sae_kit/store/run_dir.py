"""The layout of a run directory, named in one place.

    runs/gpt2-e2e-20261125-120000/
        config.json                 the training settings (+ "resolved": what they came to)
        metrics.jsonl               one JSON row per logged step
        eval.json                   written by `sae-kit eval`
        sweep-eval.json             the eval settings a sweep evaluated the run with
        failed.json                 a group member that stopped on a non-finite step (why, when)
        checkpoints/step-000042/    see sae_kit.train.checkpoint
        lora/                       a --lora run's adapters (adapter_model.safetensors + config)
        blocks.6.hook_resid_pre/    one SAE directory per hook point (see sae_kit.store.sae_dir)
        transformer.h.6.mlp.c_fc/   ... named by the hook point, a module path included

Everything that reads or writes these names goes through :class:`RunDir`; :meth:`RunDir.read`
is the one reader of ``config.json`` (a :class:`~sae_kit.record.run_record.RunRecord`). No torch
import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.run_record import RunRecord
from sae_kit.store.jsonio import read_json

CONFIG = "config.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
FAILED = "failed.json"
SWEEP_EVAL = "sweep-eval.json"
CHECKPOINTS = "checkpoints"
LORA = "lora"
SAE_DIR_PREFIX = "blocks."
"""The name of every SAE directory at a ``blocks.L.hook_*`` point starts so."""


def named_hook_point(name: str) -> HookPoint | None:
    """The hook point a run directory's child ``name`` is named after, if it is one."""
    try:
        return HookPoint.parse(name)
    except SaeKitError:
        return None


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    @property
    def sweep_eval(self) -> Path:
        """The eval settings of the sweep that wrote eval.json (sae_kit.sweep.runner): an edit
        of the sweep's eval_tokens evaluates the run again instead of keeping old figures."""
        return self.path / SWEEP_EVAL

    @property
    def failed(self) -> Path:
        """Written when this run stopped alone in a group or sweep (sae_kit.train.nonfinite)."""
        return self.path / FAILED

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def lora(self) -> Path:
        """The LoRA adapters of a ``--lora`` run, as peft saves them (sae_kit.model.lora)."""
        return self.path / LORA

    def sae(self, hook_point: HookPoint | str) -> Path:
        """The SAE directory of one hook point."""
        return self.path / str(hook_point)

    def is_run(self) -> bool:
        return self.config.is_file()

    def read(self) -> RunRecord:
        """The run's settings and what they resolved to; one line if this is no run directory."""
        if not self.is_run():
            raise SaeKitError(f"{str(self.path)!r} is not a sae-kit run directory (no "
                              f"{CONFIG}); pass the directory `sae-kit train` printed")
        return RunRecord.from_json(read_json(self.config), str(self.config))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)
