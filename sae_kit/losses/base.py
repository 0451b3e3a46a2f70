"""The interface every training objective implements.

The trainer knows nothing about any particular loss: it calls ``loss(splice, input_ids)`` and
backpropagates ``result.loss``. A complete loss plugin (``my_loss.py``), registered as
``[project.entry-points."sae_kit.losses"] cosine = "my_loss:CosineLoss"``::

    from dataclasses import dataclass, field
    import torch
    import torch.nn.functional as F
    from sae_kit.losses import Loss, LossResult
    from sae_kit.model import Splice

    class CosineLoss(Loss):
        name = "cosine"

        @dataclass
        class Options:
            scale: float = field(default=1.0, metadata={"help": "Weight of the cosine term."})

        def __call__(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
            clean = splice.clean(input_ids, capture=splice.sae_sites, final_hidden=False)
            total, terms, codes = 0.0, {}, {}
            for hp, sae in splice.saes.items():
                x = clean.acts[hp.site].float()
                out = sae(x)
                term = 1 - F.cosine_similarity(out.output, x, dim=-1).mean()
                sae_total, sae_terms = self.sae_terms(hp, sae, out)  # lambda, AuxK, ...
                total = total + self.opts.scale * term + sae_total
                terms.update(sae_terms, **{f"cosine/{hp}": term.detach()})
                codes[hp] = out.codes
            return LossResult(loss=total, terms=terms, codes=codes)

Options are a dataclass whose fields (with ``metadata={"help": ...}``) become ``--loss-option
key=value`` settings on the command line; ``sae-kit plugins --options`` lists them. The loss
reads them as ``self.opts.<field>``, the same attribute SAE architectures use, and the run's
config.json records them typed, defaults filled in (``dataclasses.asdict(loss.opts)``). A loss
without options leaves ``Options`` out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from sae_kit.architectures.base import SAE, SAEOutput
from sae_kit.model.hookpoints import HookPoint, Site
from sae_kit.model.splice import Splice
from sae_kit.options import parse_options


@dataclass
class LossResult:
    loss: torch.Tensor
    """The scalar to minimise."""
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    """Named parts of the loss, detached, for logging."""
    codes: dict[HookPoint, torch.Tensor] = field(default_factory=dict)
    """Each SAE's codes on this batch, for L0 and dead-feature tracking."""
    active: dict[HookPoint, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(
        default_factory=dict)
    """``SAEOutput.active`` of the SAEs whose sparse kernels listed their non-zero codes: the
    statistics count those instead of scanning every code. Optional; missing ones are scanned."""


def listed_active(outputs: dict[HookPoint, SAEOutput]
                  ) -> dict[HookPoint, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``LossResult.active`` of these SAE outputs: those whose non-zero codes were listed."""
    return {hp: out.active for hp, out in outputs.items() if out.active is not None}


class Loss:
    """An objective: ``loss(splice, input_ids)`` runs the model with the SAEs spliced in."""

    name: ClassVar[str] = ""

    @dataclass
    class Options:
        pass

    def __init__(self, sparsity_coeff: float, **options: Any) -> None:
        self.sparsity_coeff = sparsity_coeff
        self.opts = parse_options(self.Options, options, self.name)

    def clean_needs(self, splice: Splice) -> tuple[list[Site], bool]:
        """What this loss reads of the clean pass: sites (residual positions, or hook points
        inside layers) and whether the final hidden states. ``sae-kit cache`` stores exactly
        that; by default the SAEs' sites and the output."""
        return splice.sae_sites, True

    def sparsity(self, sae: SAE, out: SAEOutput) -> torch.Tensor:
        """lambda times the architecture's penalty (L1 / d_in for the paper's SAE, L0 / d_in
        for JumpReLU; zero for the TopK family)."""
        penalty = sae.sparsity_penalty(out.codes) if out.penalty is None else out.penalty
        return self.sparsity_coeff * penalty

    def sae_terms(self, hp: HookPoint, sae: SAE, out: SAEOutput
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """What an SAE adds to any loss: the sparsity term plus the architecture's own terms
        (``out.aux``: AuxK, Matryoshka's prefixes); and their log terms, named per hook point,
        with the architecture's logged values (``out.logs``: AuxK's dead fraction)."""
        total = self.sparsity(sae, out)
        terms = {f"sparsity/{hp}": total.detach()}
        for name, value in out.aux.items():
            total = total + value
            terms[f"{name}/{hp}"] = value.detach()
        terms.update({f"{name}/{hp}": value.detach() for name, value in out.logs.items()})
        return total, terms

    def __call__(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
        raise NotImplementedError
