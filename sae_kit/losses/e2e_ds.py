"""e2e+ds: KL on the output plus MSE between spliced and original residual streams downstream."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from sae_kit.errors import SaeKitError
from sae_kit.losses.base import Loss, LossResult, listed_active
from sae_kit.losses.terms import KLOptions, output_kl, sparsity_terms
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.splice import Splice


class E2EDownstreamLoss(Loss):
    """kl_coeff * KL + ds_coeff * mean_l MSE(spliced_l, original_l) + lambda * L1/d_in.

    l runs over the outputs of the layers after the first SAE (``downstream``), each MSE an
    element mean. Paper defaults: kl_coeff 0.5, ds_coeff 2.5, and the reference's configs' layers:
    every later layer's output except the last layer's (5 terms for an SAE at layer 6 of 12).
    """

    name = "e2e+ds"

    @dataclass
    class Options(KLOptions):
        kl_coeff: float = field(default=0.5, metadata={"help": "Weight of the KL term."})
        ds_coeff: float = field(
            default=2.5, metadata={"help": "beta: weight of the mean downstream MSE."}
        )
        downstream: str = field(
            default="paper",
            metadata={"help": "Layers whose outputs are compared: 'paper' (every later layer "
                      "but the last, as the reference's configs), 'all' later ones, or '8,10'."},
        )

    def positions(self, first: int, n_layers: int) -> list[int]:
        later = HookPoint.downstream_positions(first, n_layers)
        if self.opts.downstream == "all":
            return later
        if self.opts.downstream == "paper":  # the last layer's output, position n_layers, out
            return [p for p in later if p < n_layers]
        try:
            chosen = [HookPoint(int(x), "resid_post").position
                      for x in self.opts.downstream.split(",")]
        except ValueError:
            raise SaeKitError(
                f"downstream must be 'paper', 'all' or comma-separated layer numbers, "
                f"got {self.opts.downstream!r}"
            ) from None
        bad = [HookPoint.output_at(p).layer for p in chosen if p not in later]
        if bad:
            raise SaeKitError(
                f"downstream layers {bad} are not after the SAE; choose from "
                f"{[HookPoint.output_at(p).layer for p in later]}"
            )
        return chosen

    def clean_needs(self, splice: Splice) -> tuple[list[int], bool]:
        # What __call__ captures: the spliced pass's start and the later layers' outputs.
        later = self.positions(splice.first_position, splice.n_layers)
        return [splice.first_position, *later], True

    def __call__(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
        positions = self.positions(splice.first_position, splice.n_layers)
        clean = splice.clean(input_ids, capture=[splice.first_position, *positions])
        spliced = splice.spliced(input_ids, capture=positions, clean=clean)
        kl = output_kl(splice, clean, spliced, self.opts)
        sparsity, terms, codes = sparsity_terms(self, splice, spliced.sae_outputs)
        total = self.opts.kl_coeff * kl + sparsity
        if positions:
            mses = [
                F.mse_loss(spliced.acts[p].float(), clean.acts[p].float()) for p in positions
            ]
            ds = torch.stack(mses).mean()
            total = total + self.opts.ds_coeff * ds
            terms["ds_mse"] = ds.detach()
        terms["kl"] = kl.detach()
        return LossResult(loss=total, terms=terms, codes=codes,
                          active=listed_active(spliced.sae_outputs))
