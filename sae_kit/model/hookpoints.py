"""Names for the places an SAE reads and replaces.

sae-kit uses TransformerLens-style names - ``blocks.6.hook_resid_pre`` is the input of layer 6,
``blocks.6.hook_resid_post`` its output - but the activations are the raw Hugging Face ones
(no centring, no folded LayerNorm; see docs/conventions.md). Inside a layer:
``blocks.6.hook_attn_out`` (the attention block's output, before it joins the residual),
``blocks.6.hook_mlp_in`` (the MLP's input: the normed residual) and ``blocks.6.hook_mlp_out``;
any module inside a decoder layer by its Hugging Face path, e.g. ``transformer.h.6.mlp.c_fc``
(its output).

A residual-stream hook point is a *position*: position p < n_layers is the input of layer p,
position n_layers the output of the last layer. ``resid_post`` of layer i and ``resid_pre`` of
layer i + 1 are the same position. A hook point inside layer L has no position; a spliced pass
starts from the residual at layer L's input (``start_position``). ``site`` is the key captured
activations are stored under: the position on the residual stream, the hook point itself
elsewhere. All arithmetic between layers and positions lives in :class:`HookPoint`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Union

from sae_kit.errors import SaeKitError

HookKind = Literal["resid_pre", "resid_post", "attn_out", "mlp_in", "mlp_out", "module"]
RESIDUAL_KINDS = ("resid_pre", "resid_post")
LAYER_KINDS = ("attn_out", "mlp_in", "mlp_out")
_NAME = re.compile(r"^blocks\.(\d+)\.hook_([a-z_]+)$")
_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")
_EXAMPLES = ("blocks.6.hook_resid_pre, blocks.6.hook_resid_post, blocks.6.hook_attn_out, "
             "blocks.6.hook_mlp_in, blocks.6.hook_mlp_out, or a module path inside a decoder "
             "layer such as transformer.h.6.mlp.c_fc")

_STEP = {"resid_pre": 0, "attn_out": 1, "module": 2, "mlp_in": 2, "mlp_out": 3, "resid_post": 4}
"""The order of hook points inside one layer's forward pass (a module path: unknown, mid-layer)."""

Site = Union[int, "HookPoint"]
"""Where a pass records an activation: a residual position, or a hook point inside a layer."""


@dataclass(frozen=True, order=True)
class HookPoint:
    layer: int
    kind: HookKind = "resid_pre"
    module: str = ""
    """The Hugging Face module path, for kind ``module`` only."""

    @property
    def name(self) -> str:
        return self.module if self.kind == "module" else f"blocks.{self.layer}.hook_{self.kind}"

    @property
    def on_residual(self) -> bool:
        return self.kind in RESIDUAL_KINDS

    @property
    def position(self) -> int:
        """The residual-stream position; only residual hook points have one."""
        if not self.on_residual:
            raise SaeKitError(f"{self.name} is inside layer {self.layer}, not on the residual "
                              "stream; use its `site` (or `start_position`)")
        return self.layer + (1 if self.kind == "resid_post" else 0)

    @property
    def start_position(self) -> int:
        """The residual position a spliced pass starts from: this one, or the layer's input."""
        return self.position if self.on_residual else self.layer

    @property
    def site(self) -> Site:
        """The key of this hook point's activation in a pass's captures."""
        return self.position if self.on_residual else self

    @property
    def pass_order(self) -> tuple[int, int]:
        """Where a forward pass reaches this hook point: (layer, step inside the layer)."""
        return self.layer, _STEP[self.kind]

    def output_for(self, output: str) -> HookPoint:
        """A transcoder's output hook point: ``output`` is a kind at this hook point's layer
        (``mlp_out``) or a full name; one line if it does not come after this one."""
        kinds = RESIDUAL_KINDS + LAYER_KINDS
        out = HookPoint(self.layer, output) if output in kinds else HookPoint.parse(output)  # type: ignore[arg-type]
        # Inside one layer a module path's place is unknown: any other name there may follow.
        unknown = "module" in (out.kind, self.kind) and out.layer == self.layer
        if out == self or (out.pass_order <= self.pass_order and not unknown):
            raise SaeKitError(f"a transcoder's output {out} must come after its input {self} "
                              "in the forward pass, e.g. blocks.L.hook_mlp_in -> "
                              "blocks.L.hook_mlp_out")
        return out

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
        """Residual positions after this hook point: the outputs of its layer (when inside
        one) and of every later layer."""
        return self.downstream_positions(self.start_position, n_layers)

    @classmethod
    def parse(cls, name: str) -> HookPoint:
        match = _NAME.match(name)
        if match and match.group(2) in RESIDUAL_KINDS + LAYER_KINDS:
            return cls(int(match.group(1)), match.group(2))  # type: ignore[arg-type]
        if match:
            raise SaeKitError(f"unknown hook point kind hook_{match.group(2)} in {name!r}; "
                              f"expected e.g. {_EXAMPLES}")
        layer = _layer_in_path(name)
        if _MODULE_PATH.match(name) and "." in name and layer is None:  # e.g. transformer.wte
            raise SaeKitError(f"bad hook point {name!r}: that module is outside the decoder "
                              f"layers (its path names no layer); expected e.g. {_EXAMPLES}")
        if not _MODULE_PATH.match(name) or layer is None:
            raise SaeKitError(f"bad hook point {name!r}; expected e.g. {_EXAMPLES}")
        return cls(layer, "module", name)

    def check(self, n_layers: int) -> None:
        if not 0 <= self.layer < n_layers:
            raise SaeKitError(
                f"layer {self.layer} is out of range: this model has {n_layers} layers "
                f"(0 to {n_layers - 1})"
            )

    def __str__(self) -> str:
        return self.name


def _layer_in_path(path: str) -> int | None:
    """The first all-digit part of a module path: the layer index in HF decoder stacks."""
    numbers = [part for part in path.split(".") if part.isdigit()]
    return int(numbers[0]) if numbers else None
