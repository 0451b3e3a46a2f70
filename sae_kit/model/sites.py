"""Which module, and which side of it (input or output), a hook point inside a layer reads.

``hook_attn_out`` and ``hook_mlp_out`` are the outputs of the adapter's attention and MLP
modules, ``hook_mlp_in`` the MLP's input, and a module path the output of that module, which must
sit inside a decoder layer. Every mistake is one line naming what this model offers instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from sae_kit.errors import SaeKitError
from sae_kit.model.adapter import ModelAdapter
from sae_kit.model.hookpoints import HookPoint

_LISTED = 12  # module paths an error lists before "..."


@dataclass(frozen=True)
class ModuleSite:
    module: nn.Module
    side: Literal["input", "output"]


def locate(model: nn.Module, adapter: ModelAdapter, hook_point: HookPoint) -> ModuleSite:
    """The module whose input or output ``hook_point`` (one inside a layer) names."""
    layers = adapter.layers(model)
    hook_point.check(len(layers))
    layer = layers[hook_point.layer]
    if hook_point.kind == "attn_out":
        return ModuleSite(adapter.attention(layer), "output")
    if hook_point.kind == "mlp_out":
        return ModuleSite(adapter.mlp(layer), "output")
    if hook_point.kind == "mlp_in":
        return ModuleSite(adapter.mlp(layer), "input")
    return ModuleSite(_module_at(model, layers, hook_point), "output")


def _module_at(model: nn.Module, layers: nn.ModuleList, hook_point: HookPoint) -> nn.Module:
    names = {module: name for name, module in model.named_modules()}
    layers_path = names[layers]
    prefix = f"{layers_path}.{hook_point.layer}."
    if not hook_point.module.startswith(prefix):
        raise SaeKitError(
            f"module {hook_point.module!r} is not inside a decoder layer; this model's layers "
            f"are {layers_path}.0 to {layers_path}.{len(layers) - 1}, e.g. "
            f"{_inside(model, prefix)}"
        )
    try:
        return model.get_submodule(hook_point.module)
    except AttributeError:
        raise SaeKitError(
            f"no module {hook_point.module!r} in this model; layer {hook_point.layer} has "
            f"{_inside(model, prefix)}"
        ) from None


def _inside(model: nn.Module, prefix: str) -> str:
    found = [name for name, _ in model.named_modules() if name.startswith(prefix)]
    shown = ", ".join(found[:_LISTED])
    return shown + (", ..." if len(found) > _LISTED else "")
