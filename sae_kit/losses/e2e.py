"""The end-to-end objective: KL(original || spliced) on the output distribution + sparsity."""

from __future__ import annotations

import torch

from sae_kit.losses.base import Loss, LossResult
from sae_kit.losses.kl import kl_divergence


def sparsity_terms(loss: Loss, splice, sae_outputs) -> tuple[torch.Tensor, dict, dict]:
    """Sum of each SAE's sparsity penalty, plus its log terms and codes."""
    total = 0.0
    terms, codes = {}, {}
    for hp, out in sae_outputs.items():
        sparsity = loss.sparsity(splice.saes[hp], out.codes)
        total = total + sparsity
        terms[f"sparsity/{hp}"] = sparsity.detach()
        codes[hp] = out.codes
    return total, terms, codes


class E2ELoss(Loss):
    """KL(p_original || p_with_SAEs), mean over tokens, + lambda * L1/d_in per SAE.

    The clean pass runs without gradients; the spliced pass starts at the first SAE from the
    activation the clean pass cached, so the layers before it run once per step.
    """

    name = "e2e"

    def __call__(self, splice, input_ids: torch.Tensor) -> LossResult:
        clean = splice.clean(input_ids, capture=[splice.first_position])
        spliced = splice.spliced(input_ids, clean=clean)
        kl = kl_divergence(
            splice.logits(clean.final_hidden), splice.logits(spliced.run.final_hidden)
        )
        sparsity, terms, codes = sparsity_terms(self, splice, spliced.sae_outputs)
        terms["kl"] = kl.detach()
        return LossResult(loss=kl + sparsity, terms=terms, codes=codes)
