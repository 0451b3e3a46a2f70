"""Other tools' SAEs as sae-kit ones: moving decoder norms and an input bias into the encoder.

sae-kit's SAEs decode with unit columns. A tool whose decoder rows have other norms (SAELens,
sparsify) computes the same reconstruction with each row's norm n moved into the encoder:
``relu(z) * n = relu(z * n)`` for n > 0, so only the codes are rescaled. A TopK SAE ranks its
pre-activations, so there the norms may move only if they are all one number (up to the
rounding of the stored precision), folded in as a single factor.

Weights here use the SAELens layout: ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``.
"""

from __future__ import annotations

import torch

from sae_kit.errors import SaeKitError


def fold_input_bias(state: dict[str, torch.Tensor]) -> None:
    """``(x - b_dec) @ W_enc + b_enc`` as ``x @ W_enc + b_enc'``: b_dec folded into the bias."""
    state["b_enc"] = state["b_enc"] - state["b_dec"] @ state["W_enc"]


def fold_decoder_norms(state: dict[str, torch.Tensor], norms: torch.Tensor,
                       scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """sae-kit's state: unit decoder columns; ``scale`` (the row norms, or one for all) moves
    into the encoder."""
    W_dec = state["W_dec"]
    dead = norms == 0  # a zero decoder row never contributes: keep its codes at zero
    scale = torch.where(dead, torch.zeros_like(scale), scale)
    unit = torch.where(dead[:, None], torch.eye(1, W_dec.shape[1]).expand_as(W_dec),
                       W_dec / norms.clamp_min(1e-30)[:, None])
    return {"W_enc": (state["W_enc"] * scale).T.contiguous(), "b_enc": state["b_enc"] * scale,
            "W_dec": unit.T.contiguous(), "b_dec": state["b_dec"]}


def one_norm_scale(norms: torch.Tensor, eps: float, source: str, why: str) -> torch.Tensor:
    """The single factor a TopK SAE's decoder rows share, or one line naming ``source`` and
    ``why`` that matters when they differ: folding unequal norms would change which k win.
    Rows stored in half precision differ by rounding (about eps), which is no real difference.
    """
    low, high = norms.min().item(), norms.max().item()
    if high == 0 or high - low > max(1e-5, 4 * eps) * high:
        raise SaeKitError(f"cannot import {source!r}: its topk decoder rows differ in norm "
                          f"({low:.4g} to {high:.4g}) {why}; sae-kit (unit decoder columns) "
                          "cannot reproduce that")
    return norms.mean().expand_as(norms)
