"""sae-kit hook points as SAELens (TransformerLens) hook names, and back.

Residual, ``hook_attn_out`` and ``hook_mlp_out`` names are the same in both. sae-kit's
``hook_mlp_in`` is the MLP's *normed* input, which TransformerLens calls
``blocks.L.ln2.hook_normalized`` (its own ``hook_mlp_in`` is the residual before ``ln2``), so a
file written for SAELens names that hook. A module path has no TransformerLens hook.
"""

from __future__ import annotations

import re

from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint

_NORMED_MLP_IN = re.compile(r"^blocks\.(\d+)\.ln2\.hook_normalized$")


def to_transformer_lens(hook_point: HookPoint) -> str:
    """The SAELens ``hook_name`` of the activation an SAE at ``hook_point`` reads."""
    if hook_point.kind == "module":
        raise SaeKitError(f"an SAE at module path {hook_point.name!r} has no SAELens "
                          "(TransformerLens) hook name; export SAEs at blocks.L.hook_* points")
    if hook_point.kind == "mlp_in":
        return f"blocks.{hook_point.layer}.ln2.hook_normalized"
    return hook_point.name


def from_transformer_lens(hook_name: str) -> HookPoint:
    """The sae-kit hook point of an SAELens ``hook_name``; one line for one sae-kit lacks."""
    normed = _NORMED_MLP_IN.match(hook_name)
    if normed:
        return HookPoint(int(normed.group(1)), "mlp_in")
    if hook_name == "blocks" or hook_name.startswith("blocks."):
        hook_point = HookPoint.parse(hook_name)  # one line for an unknown blocks.L.hook_* kind
        if hook_point.kind != "module":
            return hook_point
    raise SaeKitError(f"SAELens hook {hook_name!r} has no sae-kit hook point; sae-kit reads "
                      "blocks.L.hook_resid_pre/resid_post/attn_out/mlp_out and "
                      "blocks.L.ln2.hook_normalized (sae-kit's hook_mlp_in)")
