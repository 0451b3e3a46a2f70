"""What a dictionary element's direction does, and where the dictionary started.

Output-token effects: the decoder direction d (unit norm) is read through the final norm and
the unembedding, as if added to the last residual stream. A norm's per-dimension gain
(``weight``) is linear and folded in; LayerNorm's mean subtraction is linear too and applied
(d - mean(d)); the division by the token's RMS and the norm's bias are not (they depend on the
token or are the same for every feature), so the values rank tokens within a feature, and the
scale is that of a unit-norm residual direction. The unembedding's bias is left out likewise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sae_kit import plugins
from sae_kit.architectures.factory import seeded_saes
from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.geometry import CHUNK, top_cosine, unit_columns
from sae_kit.model.hookpoints import HookPoint

if TYPE_CHECKING:
    from sae_kit.record.config import TrainConfig


def through_final_norm(directions: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:
    """(d_model, n) unit directions as the unembedding sees them: centred (LayerNorm), scaled
    by the norm's gain."""
    out = directions
    if isinstance(norm, nn.LayerNorm):
        out = out - out.mean(0, keepdim=True)
    weight = getattr(norm, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.shape == (directions.shape[0],):
        out = out * weight.detach().float().cpu()[:, None]
    return out


def output_token_effects(directions: torch.Tensor, unembed: nn.Module, norm: nn.Module | None,
                         k: int) -> dict[str, torch.Tensor]:
    """Each element's k most promoted and k most suppressed output tokens, with logit values.

    Returns ``top_ids``/``top_values`` and ``bottom_ids``/``bottom_values``, each (n, k), the
    bottom ones most negative first; k = 0 gives (n, 0) tensors without touching the model.
    """
    if k == 0:
        empty = torch.zeros(directions.shape[1], 0)
        return {"top_ids": empty.long(), "top_values": empty, "bottom_ids": empty.long(),
                "bottom_values": empty}
    folded = through_final_norm(unit_columns(directions), norm)
    param = next(unembed.parameters())
    zero = unembed(torch.zeros(1, folded.shape[0], dtype=param.dtype, device=param.device))
    parts: dict[str, list[torch.Tensor]] = {"top": [], "bottom": []}
    ids: dict[str, list[torch.Tensor]] = {"top": [], "bottom": []}
    with torch.no_grad():
        for start in range(0, folded.shape[1], CHUNK):
            chunk = folded[:, start:start + CHUNK].T.to(param.device, param.dtype)
            logits = (unembed(chunk) - zero).float().cpu()  # (chunk, vocab), bias removed
            for side, largest in (("top", True), ("bottom", False)):
                v, i = logits.topk(min(k, logits.shape[1]), dim=1, largest=largest)
                parts[side].append(v)
                ids[side].append(i)
    return {f"{side}_{what}": torch.cat(src[side]) for side in ("top", "bottom")
            for what, src in (("ids", ids), ("values", parts))}


def nearest_features(directions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each element's k nearest other elements by decoder cosine: (values, indices), (n, k)."""
    return top_cosine(directions, directions, k=k, exclude_self=True)


def initial_decoder(sae_config: dict[str, Any], run_config: TrainConfig | None,
                    hook_point: HookPoint, widths: Mapping[str, int] | None = None
                    ) -> torch.Tensor | None:
    """The decoder this SAE started from, rebuilt from its run's seed; None if not knowable.

    widths: the run's activation widths by hook point where they are not d_in (module paths;
    ``Resolved.widths``). Training builds its SAEs with
    :func:`sae_kit.architectures.factory.seeded_saes`; calling it with the run's record
    reproduces every initial weight exactly (tested against
    :func:`sae_kit.train.build.build_saes`).
    """
    if run_config is None or not run_config.hook_points:
        return None
    try:
        plugins.load("architectures", run_config.architecture)
    except SaeKitError:
        return None
    d_in, n_dict = int(sae_config["d_in"]), int(sae_config["n_dict"])
    widths = widths or {}
    generator_state = torch.random.get_rng_state()
    try:
        for name, sae in seeded_saes(run_config.architecture, run_config.architecture_options,
                                     {n: widths.get(n, d_in) for n in run_config.hook_points},
                                     n_dict, run_config.seed):
            if HookPoint.parse(name) == hook_point:
                return sae.W_dec.detach().clone()
    finally:
        torch.random.set_rng_state(generator_state)
    return None
