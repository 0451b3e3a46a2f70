"""The end-to-end objective: KL(original || spliced) on the output distribution + sparsity."""

from __future__ import annotations

import torch

from sae_kit.losses.base import Loss, LossResult, listed_active
from sae_kit.losses.terms import KLOptions, output_kl, sparsity_terms
from sae_kit.model.hookpoints import Site
from sae_kit.model.splice import Splice


class E2ELoss(Loss):
    """KL(p_original || p_with_SAEs), mean over tokens, + lambda * L1/d_in per SAE.

    The clean pass runs without gradients; the spliced pass starts at the first SAE from the
    activation the clean pass cached, so the layers before it run once per step. Both passes stop
    before the unembedding; the KL multiplies the final hidden states by it a chunk of tokens at
    a time (:mod:`sae_kit.losses.chunked_kl`).
    """

    name = "e2e"
    Options = KLOptions

    def clean_needs(self, splice: Splice) -> tuple[list[Site], bool]:
        # The residual the spliced pass starts from (a layer's input for an SAE inside it).
        return [splice.first_position], True

    def __call__(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
        clean = splice.clean(input_ids, capture=[splice.first_position])
        spliced = splice.spliced(input_ids, clean=clean)
        kl = output_kl(splice, clean, spliced, self.opts)
        sparsity, terms, codes = sparsity_terms(self, splice, spliced.sae_outputs)
        terms["kl"] = kl.detach()
        return LossResult(loss=kl + sparsity, terms=terms, codes=codes,
                          active=listed_active(spliced.sae_outputs))
