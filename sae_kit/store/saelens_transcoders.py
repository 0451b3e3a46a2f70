"""Transcoders and skip transcoders in SAELens' layout (:mod:`sae_kit.store.saelens` does SAEs).

SAELens names four: ``transcoder`` (ReLU codes) and ``jumprelu_transcoder``, each also as
``skip_*``/``jumprelu_skip_*`` with ``W_skip`` [d_out, d_in] added as ``x @ W_skip.T`` - sae-kit's
skip term exactly. Its cfg has ``d_out``; the output hook point is ``hook_name_out``, the key
SAELens' own transcoder loaders write (its config class drops it, so ``sae_kit`` provenance
carries it too). sae-kit transcoders map between equal widths, so ``d_out`` must be ``d_in``.
SAELens has no TopK transcoder: a topk transcoder is refused in one line.
"""

from __future__ import annotations

from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.tl_names import from_transformer_lens, to_transformer_lens

# sae-kit architecture -> SAELens transcoder architecture (without, with the skip).
TO_SAELENS = {"relu": ("transcoder", "skip_transcoder"),
              "jumprelu": ("jumprelu_transcoder", "jumprelu_skip_transcoder"),
              "batchtopk": ("jumprelu_transcoder", "jumprelu_skip_transcoder"),
              "matryoshka": ("jumprelu_transcoder", "jumprelu_skip_transcoder")}
# SAELens transcoder architecture -> (the SAELens SAE architecture of its codes, skip?).
FROM_SAELENS = {"transcoder": ("standard", False), "skip_transcoder": ("standard", True),
                "jumprelu_transcoder": ("jumprelu", False),
                "jumprelu_skip_transcoder": ("jumprelu", True)}


def transcoder_cfg(name: str, config: dict[str, Any], skip: bool) -> dict[str, Any]:
    """The cfg.json fields of a transcoder's export (none for a plain SAE)."""
    output = config.get("output_hook_point")
    if not output:
        return {}
    if name not in TO_SAELENS:
        raise SaeKitError(f"SAELens has no {name!r} transcoder; its transcoders export from: "
                          f"{', '.join(TO_SAELENS)}")
    return {"architecture": TO_SAELENS[name][skip], "d_out": config["d_in"],
            "hook_name_out": to_transformer_lens(HookPoint.parse(str(output)))}


def read_transcoder(flat: dict[str, Any]) -> tuple[dict[str, Any], HookPoint | None, bool]:
    """An SAELens cfg as its plain SAE's (``architecture`` of its codes), the output hook point
    and whether it has a skip; a plain SAE's cfg comes back as it was, with None."""
    arch = flat.get("architecture")
    if arch not in FROM_SAELENS:
        return flat, None, False
    codes, skip = FROM_SAELENS[arch]
    d_in, d_out = flat.get("d_in"), flat.get("d_out", flat.get("d_in"))
    if d_out != d_in:
        raise SaeKitError(f"this {arch} maps width {d_in} to {d_out}; sae-kit transcoders map "
                          "between equal widths")
    hook = from_transformer_lens(str(flat.get("hook_name")))
    if flat.get("hook_name_out"):
        output = from_transformer_lens(str(flat["hook_name_out"]))
    elif hook.kind == "mlp_in":  # what SAELens' MLP transcoders (Gemma Scope's) replace
        output = HookPoint(hook.layer, "mlp_out")
    else:
        raise SaeKitError(f"this {arch} names no hook_name_out; sae-kit needs the hook point "
                          "its output replaces")
    hook.output_for(output.name)  # the output must come after the input
    return {**flat, "architecture": codes, "apply_b_dec_to_input": False}, output, skip
