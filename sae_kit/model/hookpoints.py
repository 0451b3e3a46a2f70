"""Names for places in the residual stream.

sae-kit uses TransformerLens-style names - ``blocks.6.hook_resid_pre`` is the input of layer 6,
``blocks.6.hook_resid_post`` its output - but the activations are the raw Hugging Face ones
(no centring, no folded LayerNorm; see docs/conventions.md).

Internally a hook point is a *position* in the residual stream: position p < n_layers is the
input of layer p, position n_layers the output of the last layer. ``resid_post`` of layer i and
``resid_pre`` of layer i + 1 are the same position. All arithmetic between layers and
positions lives in :class:`HookPoint`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sae_kit.errors import SaeKitError

HookKind = Literal["resid_pre", "resid_post"]
_NAME = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post)$")


@dataclass(frozen=True, order=True)
class HookPoint:
    layer: int
    kind: HookKind = "resid_pre"

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.kind}"

    @property
    def position(self) -> int:
        return self.layer + (1 if self.kind == "resid_post" else 0)

    @classmethod
    def default(cls, n_layers: int) -> HookPoint:
        """Where an SAE goes when no hook point is named: the middle layer's input."""
        return cls(n_layers // 2, "resid_pre")

    @classmethod
    def output_at(cls, position: int) -> HookPoint:
        """``position`` named as a layer's output: ``resid_post`` of layer ``position - 1``."""
        return cls(position - 1, "resid_post")

    @staticmethod
    def downstream_positions(first: int, n_layers: int) -> list[int]:
        """Residual-stream positions after ``first``: the outputs of every later layer."""
        return list(range(first + 1, n_layers + 1))

    def downstream(self, n_layers: int) -> list[int]:
        """Positions after this hook point: the outputs of every later layer."""
        return self.downstream_positions(self.position, n_layers)

    @classmethod
    def parse(cls, name: str) -> HookPoint:
        match = _NAME.match(name)
        if not match:
            raise SaeKitError(
                f"bad hook point {name!r}; expected e.g. blocks.6.hook_resid_pre or "
                "blocks.6.hook_resid_post"
            )
        return cls(int(match.group(1)), match.group(2))  # type: ignore[arg-type]

    def check(self, n_layers: int) -> None:
        if not 0 <= self.layer < n_layers:
            raise SaeKitError(
                f"layer {self.layer} is out of range: this model has {n_layers} layers "
                f"(0 to {n_layers - 1})"
            )

    def __str__(self) -> str:
        return self.name

