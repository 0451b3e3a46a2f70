"""One SAE to analyse, from a run directory (+ hook point), an SAE directory (sae-kit's or
SAELens') or a Hub id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit.architectures.base import SAE
from sae_kit.builtin import BUILTIN_DATASET_NAME
from sae_kit.data import DataSpec
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.run_record import RunRecord
from sae_kit.store.run_dir import RunDir
from sae_kit.store.sae_dir import is_sae_dir, load_sae_dir
from sae_kit.store.sources import check_hook_point, pick_sae, resolve_sae_source


@dataclass
class AnalysisSource:
    label: str
    """Short name for tables and plots: the run directory's name, or the SAE's."""
    path: Path
    hook_point: HookPoint
    sae: SAE
    sae_config: dict[str, Any]
    run: RunRecord | None
    """The training run's record, where the SAE sits in a run directory."""

    @property
    def model(self) -> str:
        return str(self.sae_config.get("model") or (self.run.config.model if self.run else None))

    @property
    def revision(self) -> str | None:
        return self.sae_config.get("revision")

    @property
    def context(self) -> int:
        context = self.sae_config.get("context") or (self.run.resolved.context if self.run
                                                      else None)
        if not context:
            raise SaeKitError(f"{str(self.path)!r} does not record its context length; was it "
                              "written by `sae-kit train`?")
        return int(context)

    @property
    def data_spec(self) -> DataSpec:
        if self.run is not None:
            return self.run.data_spec
        return DataSpec(self.sae_config.get("dataset") or BUILTIN_DATASET_NAME)


def is_saelens_dir(path: Path) -> bool:
    from sae_kit.store.saelens import CFG, WEIGHTS

    return (path / CFG).is_file() and (path / WEIGHTS).is_file()


def _import_saelens(path: Path, device: str | torch.device) -> tuple[SAE, dict[str, Any]]:
    """An SAELens SAE directory, converted as `sae-kit import` does, without writing a copy."""
    import tempfile

    from sae_kit.store.saelens import import_saelens

    with tempfile.TemporaryDirectory() as tmp:
        return load_sae_dir(import_saelens(path, Path(tmp) / path.name), device)


def open_source(ref: str, hook_point: str | None = None,
                device: str | torch.device = "cpu") -> AnalysisSource:
    """Resolve ``ref`` (run dir, SAE dir or Hub id) and load the SAE at ``hook_point``."""
    path = resolve_sae_source(ref)
    if not path.is_dir():
        raise SaeKitError(f"{ref!r} is a file; pass a run directory or an SAE directory")
    if is_saelens_dir(path) and not is_sae_dir(path):
        sae, sae_config = _import_saelens(path, device)
        hp = HookPoint.parse(sae_config["hook_point"])
        check_hook_point(ref, hp, hook_point)
        sae.requires_grad_(False)
        return AnalysisSource(path.name, path, hp, sae, sae_config, None)
    hp, sae_path = pick_sae(path, hook_point, ref)
    sae, sae_config = load_sae_dir(sae_path, device)
    if sae_path == path:  # an SAE directory: its run's record where it sits in one
        run_dir = RunDir(path.parent)
        run = run_dir.read() if run_dir.is_run() else None
        label = path.parent.name if run else path.name
    else:
        run = RunDir(path).read() if RunDir(path).is_run() else None
        label = path.name
    sae.requires_grad_(False)
    return AnalysisSource(label, path, hp, sae, sae_config, run)
