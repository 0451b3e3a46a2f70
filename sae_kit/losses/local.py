"""The standard SAE objective: reconstruct the activation (element-mean MSE) + sparsity."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sae_kit.losses.base import Loss, LossResult, listed_active
from sae_kit.losses.terms import sparsity_terms
from sae_kit.model.hookpoints import Site
from sae_kit.model.splice import Splice


class LocalLoss(Loss):
    """MSE(x-hat, x) + lambda * L1/d_in, summed over SAEs (each SAE sees clean activations); a
    transcoder's MSE is against the clean activation at its output hook point.

    Only the layers up to the last SAE run: the forward pass stops there.
    """

    name = "local"

    def clean_needs(self, splice: Splice) -> tuple[list[Site], bool]:
        # The inputs, and a transcoder's targets; no output distribution.
        return [*splice.sae_sites, *splice.target_sites], False

    def __call__(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
        clean = splice.clean(input_ids, capture={*splice.sae_sites, *splice.target_sites},
                             final_hidden=False)
        outputs, mses = {}, {}
        for hp, sae in splice.saes.items():
            outputs[hp] = sae(clean.acts[hp.site].to(sae.W_enc.dtype))
            # A transcoder matches the model's activation at its output hook point.
            target = clean.acts[splice.outputs[hp].site].to(sae.W_enc.dtype)
            mses[hp] = F.mse_loss(outputs[hp].output, target)
        sparsity, sae_terms, codes = sparsity_terms(self, splice, outputs)
        terms = {f"mse/{hp}": mse.detach() for hp, mse in mses.items()}
        terms.update(sae_terms)
        total = torch.zeros((), device=input_ids.device) + sum(mses.values()) + sparsity
        return LossResult(loss=total, terms=terms, codes=codes, active=listed_active(outputs))
