"""A trained run's record: its settings and what they resolved to, typed and read-only.

A run directory's ``config.json`` is :meth:`RunRecord.to_json`: the TrainConfig's fields plus a
``resolved`` block. ``sae_kit.store.run_dir.RunDir.read`` parses it with
:meth:`RunRecord.from_json`, so every reader gets attributes and one clear line for a file that
is not a record. No torch import.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sae_kit.errors import SaeKitError
from sae_kit.record.config import TrainConfig

if TYPE_CHECKING:
    from sae_kit.data import DataSpec


@dataclass(frozen=True)
class StartRecord:
    """Where a fine-tune's SAEs started (``--init-from``), as it was when the run began."""

    source: str
    """As the user gave it: a path or a Hub id."""
    format: str
    """sae-kit, saelens or sparsify."""
    path: str
    """The local directory read (a Hub id's cache folder)."""
    sha256: dict[str, str]
    """Of each SAE's weight file, by hook point name."""


@dataclass(frozen=True)
class Resolved:
    """What a run's settings came to on its model and machine (``sae_kit.train.build``)."""

    context: int
    """Tokens per sample: ``--context``, or 1024 capped at the model's positions."""
    n_samples: int
    total_steps: int
    """Optimizer steps: n_samples over (batch_size * grad_accum * world_size), rounded up."""
    warmup_steps: int
    d_model: int
    n_dict: int
    n_layers: int
    model_type: str
    """The model's Hugging Face ``config.model_type`` (the adapter plugin's name)."""
    adapter: str
    """Which adapter ran the model (``ModelAdapter.describe``)."""
    device: str
    world_size: int = 1
    """Processes under torchrun; 1 alone (a record without it was trained alone)."""
    widths: dict[str, int] = dataclasses.field(default_factory=dict)
    """Activation width by hook point, only where it is not d_model (a module path)."""
    init_from: StartRecord | None = None
    """A fine-tune's starting point; None (and absent from config.json) for a fresh run."""


@dataclass(frozen=True)
class RunRecord:
    """A run's settings (every default filled in) and what they resolved to."""

    config: TrainConfig
    resolved: Resolved

    @property
    def data_spec(self) -> DataSpec:
        """The text the run trained on (and whose held-out part evaluates it)."""
        return self.config.data_spec

    def to_json(self) -> dict[str, Any]:
        """config.json's content."""
        resolved = dataclasses.asdict(self.resolved)
        if not resolved["widths"]:  # every SAE reads d_model: the record says nothing of widths
            del resolved["widths"]
        if resolved["init_from"] is None:  # a fresh run: the record says nothing of a start
            del resolved["init_from"]
        return {**self.config.to_dict(), "resolved": resolved}

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunRecord:
        """Parse config.json's content; ``where`` names the file in the one-line error."""
        if not isinstance(data, dict):
            raise SaeKitError(f"{where!r} is not a training config (a JSON "
                              f"{type(data).__name__}, not an object); pass the directory "
                              "`sae-kit train` printed")
        missing = [k for k in ("model", "dataset", "resolved") if k not in data]
        resolved = data.get("resolved")
        if isinstance(resolved, dict):
            missing += [f"resolved.{f.name}" for f in dataclasses.fields(Resolved)
                        if f.name not in resolved and f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SaeKitError(f"{where!r} lacks {missing}; was it written by `sae-kit train`?")
        if not isinstance(resolved, dict):
            raise SaeKitError(f"{where!r} has a malformed resolved block (a JSON "
                              f"{type(resolved).__name__}, not an object)")
        try:
            config = TrainConfig.from_dict(data)
        except (TypeError, SaeKitError) as exc:  # a field of the wrong type or out of range
            raise SaeKitError(f"{where!r} is not a training config ({exc})") from None
        return cls(config, _resolved(resolved, where))


def _resolved(block: dict[str, Any], where: str) -> Resolved:
    known = {f.name: f.type for f in dataclasses.fields(Resolved)}
    values = {name: value for name, value in block.items() if name in known}
    start = values.pop("init_from", None)
    wrong = [f"resolved.{name} = {value!r}" for name, value in values.items()
             if not _fits(value, known[name])]
    if start is not None and not _is_start(start):
        wrong.append(f"resolved.init_from = {start!r}")
    if wrong:
        raise SaeKitError(f"{where!r} has {', '.join(wrong)}; was it written by `sae-kit train`?")
    return Resolved(**values, init_from=None if start is None else StartRecord(**start))


def _is_start(value: Any) -> bool:
    names = {f.name for f in dataclasses.fields(StartRecord)}
    return (isinstance(value, dict) and set(value) == names
            and all(isinstance(value[k], str) for k in names - {"sha256"})
            and isinstance(value["sha256"], dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value["sha256"].items()))


def _fits(value: Any, annotation: str) -> bool:
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "dict[str, int]":
        return isinstance(value, dict) and all(_fits(v, "int") for v in value.values())
    return isinstance(value, str)
