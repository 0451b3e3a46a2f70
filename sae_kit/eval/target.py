"""What `sae-kit eval` measures: every SAE of a run, or one SAE from anywhere.

    sae-kit eval runs/gpt2-e2e-...                          # a run: all its SAEs
    sae-kit eval runs/gpt2-e2e-.../blocks.6.hook_resid_pre  # one SAE of it
    sae-kit eval imported/ --dataset my_texts/              # an imported or SAELens SAE
    sae-kit eval alice/gpt2-saes/blocks.6.hook_resid_pre    # a pushed SAE, from the Hub

A run says which model, text and context it was trained with; a single SAE says what its own
config records (SAELens' ``model_name``, ``dataset_path`` and ``context_size`` survive import),
and ``--model`` / ``--dataset`` / ``--context`` supply what it does not (or replace it: a local
copy of the same model, other text; the SAE's width must still fit the model). ``eval.json`` is
written into the directory evaluated: the run's, or the SAE's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sae_kit.architectures.base import SAE
from sae_kit.data import DataSpec
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.network import hub_ref
from sae_kit.store.run_dir import EVAL, RunDir
from sae_kit.store.sae_dir import is_sae_dir, load_run, output_hook_point, run_outputs

HUB_RUNS = Path("runs") / "hub"
"""Where an SAE named by Hub id is downloaded: a directory of the user's, so eval.json fits."""


@dataclass(frozen=True)
class Overrides:
    """What the user said on the command line about the model and the text (None: not said)."""

    model: str | None = None
    dataset: str | None = None
    context: int | None = None


@dataclass
class EvalTarget:
    path: Path
    """The run or SAE directory evaluated; eval.json goes into it."""
    saes: dict[HookPoint, SAE]
    model: str
    revision: str | None
    spec: DataSpec
    context: int
    loss: str | None
    sparsity_coeff: float | None
    outputs: dict[HookPoint, HookPoint] = field(default_factory=dict)
    """Transcoders' output hook points by input hook point (absent: an SAE writes its own)."""

    @property
    def eval_file(self) -> Path:
        return self.path / EVAL


def resolve_run_dir(ref: str) -> Path:
    """Turn what the user typed into a local directory: a path, or a Hub id (downloaded)."""
    path = Path(ref).expanduser()
    hub = None if path.exists() else hub_ref(ref)
    if hub is None:
        if path.is_dir():
            return path
        raise SaeKitError(f"no such directory: {ref!r} (a run directory, an SAE directory, or a "
                          "Hub id like namespace/name[/hook_point])")
    from sae_kit.store.sources import resolve_sae_source

    return resolve_sae_source(ref, out=HUB_RUNS / hub.repo_id.replace("/", "--"))


def open_target(ref: str, device: torch.device, said: Overrides = Overrides()) -> EvalTarget:
    path = resolve_run_dir(ref)
    if RunDir(path).is_run() and not is_sae_dir(path):
        return _run_target(path, device, said)
    return _sae_target(path, device, said)


def _run_target(run_dir: Path, device: torch.device, said: Overrides) -> EvalTarget:
    record, saes = load_run(run_dir, device)  # a broken config.json is one line here
    config = record.config
    return EvalTarget(
        run_dir, saes, said.model or config.model, config.revision,
        _other_text(record.data_spec, said), said.context or record.resolved.context,
        config.loss,
        config.sparsity_coeff if any(s.penalised for s in saes.values()) else None,
        run_outputs(run_dir),
    )


def _sae_target(path: Path, device: torch.device, said: Overrides) -> EvalTarget:
    from sae_kit.eval.analysis.source import open_source

    source = open_source(str(path), device=device)
    config, run = source.sae_config, source.run
    model = said.model or config.get("model") or (run.config.model if run else None)
    context = said.context or config.get("context") or (run.resolved.context if run else None)
    dataset = config.get("dataset") or (run.config.dataset if run else None)
    lacking = [flag for flag, value in (("--model", model), ("--dataset", said.dataset or dataset),
                                        ("--context", context)) if not value]
    if lacking:
        raise SaeKitError(f"{str(path)!r} does not record its {', '.join(f[2:] for f in lacking)}"
                          f"; pass {' and '.join(lacking)}")
    spec = run.data_spec if run else DataSpec(str(dataset or said.dataset))
    sae = source.sae
    return EvalTarget(
        path, {source.hook_point: sae}, str(model), source.revision, _other_text(spec, said),
        int(context), config.get("loss"), config.get("sparsity_coeff") if sae.penalised else None,
        {source.hook_point: output_hook_point(config)},
    )


def _other_text(spec: DataSpec, said: Overrides) -> DataSpec:
    """--dataset: its held-out documents, split off by the same rule as training's."""
    return DataSpec(said.dataset) if said.dataset else spec
