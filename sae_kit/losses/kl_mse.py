"""kl+mse: the KL fine-tune of an MSE-trained SAE (Karvonen 2025, arXiv 2503.17272).

    sae-kit train --loss kl+mse --init-from runs/local-.../ --n-samples 80

loss = (1 - w) * MSE + w * beta * KL + lambda_t * L1/d_in, per SAE for the MSE and L1 terms:

- MSE: element mean of (x-hat - x)^2, x the SAE's input in the spliced pass; KL as in ``e2e``.
- beta (``kl_coeff``): set so the two terms have one scale. Automatic by default: during the
  first ``balance_steps`` micro-batches beta is the ratio of the running means of MSE and KL
  measured so far, then it is fixed at that ratio for the rest of the run. With ``kl_weight``
  w = 0.5 the reconstruction terms then add up to the MSE phase's loss at the start, so lambda
  keeps the weight against them it had there. ``-O kl_coeff=B`` fixes beta instead.
- lambda_t: for a penalised architecture (ReLU), lambda times a factor that keeps L0 near the
  source's. The target is the mean L0 over the balance window (the SAE as it starts, on this
  data); afterwards the factor is multiplied every micro-batch by exp(rate * (L0_ema / target - 1)),
  L0_ema an exponential mean (0.9) of L0, whenever L0_ema is more than half of ``l0_tolerance``
  (default 10%) off target: sparsity tightens while L0 is above and loosens below, and lambda
  is left alone inside the band. ``-O l0_tolerance=0`` turns this off. TopK-family SAEs have
  no penalty: k is unchanged and nothing is adapted.

The balancing state (beta, the lambda factor, the L0 target and mean) is part of every checkpoint,
so a resumed fine-tune continues exactly. Under torchrun the measured means are averaged over
ranks, so every rank uses the same beta and lambda.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sae_kit.architectures.base import SAE, SAEOutput
from sae_kit.architectures.codes import active, count_true_on_device, tokens_of
from sae_kit.errors import SaeKitError
from sae_kit.losses.base import Loss, LossResult
from sae_kit.losses.terms import KLOptions, output_kl, sparsity_terms
from sae_kit.model.splice import Splice

_L0_EMA = 0.9  # ~10 micro-batches of memory: smooths one batch's noise, follows a real drift


@dataclass
class KLMSEOptions(KLOptions):
    kl_coeff: float | None = field(default=None, metadata={
        "help": "beta, the KL term's scale; default: automatic, the MSE/KL ratio measured over "
                "the first balance_steps micro-batches."})
    kl_weight: float = field(default=0.5, metadata={
        "help": "w: loss = (1-w) MSE + w beta KL + sparsity (0 is the MSE objective alone, 1 "
                "beta KL alone)."})
    balance_steps: int = field(default=10, metadata={
        "help": "Micro-batches over which beta (when automatic) and the L0 target are measured."})
    l0_tolerance: float = field(default=0.1, metadata={
        "help": "Penalised SAEs (ReLU): adapt lambda so L0 stays within about this fraction of "
                "its value at the start; 0: lambda fixed."})
    l0_rate: float = field(default=0.05, metadata={
        "help": "How fast lambda adapts: log-lambda moves by rate x relative L0 error per "
                "micro-batch."})

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = {
            "kl_coeff": self.kl_coeff is None or (math.isfinite(self.kl_coeff)
                                                  and self.kl_coeff > 0),
            "kl_weight": 0 <= self.kl_weight <= 1,
            "balance_steps": self.balance_steps >= 1,
            "l0_tolerance": 0 <= self.l0_tolerance < 1,
            "l0_rate": 0 < self.l0_rate <= 1,
        }
        wrong = [f"{k}={getattr(self, k)!r}" for k, ok in bad.items() if not ok]
        if wrong:
            raise SaeKitError(f"invalid kl+mse options: {', '.join(wrong)} (kl_coeff > 0, "
                              "kl_weight 0 to 1, balance_steps >= 1, l0_tolerance 0 to <1, "
                              "l0_rate in (0, 1])")


@dataclass
class Balance:
    """What the balancing rule has measured and set so far (saved in checkpoints)."""

    calls: int = 0
    mse_sum: float = 0.0
    kl_sum: float = 0.0
    l0_sum: float = 0.0
    kl_scale: float = 1.0
    lambda_scale: float = 1.0
    l0_target: float = 0.0
    l0_ema: float = 0.0


class KLMSELoss(Loss):
    """(1-w) MSE + w beta KL + lambda_t L1/d_in, beta and lambda_t balanced as the module says."""

    name = "kl+mse"
    Options = KLMSEOptions

    def __init__(self, sparsity_coeff: float, **options: Any) -> None:
        super().__init__(sparsity_coeff, **options)
        self.balance = Balance()

    def state_dict(self) -> dict[str, float]:
        return dict(vars(self.balance))

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.balance = Balance(**state)

    def sparsity(self, sae: SAE, out: SAEOutput) -> torch.Tensor:
        """lambda_t: the architecture's penalty weighted by lambda times the balance's factor."""
        return self.balance.lambda_scale * super().sparsity(sae, out)

    def __call__(self, splice: Splice, input_ids: torch.Tensor) -> LossResult:
        clean = splice.clean(input_ids, capture=[splice.first_position])
        spliced = splice.spliced(input_ids, clean=clean)
        kl = output_kl(splice, clean, spliced, self.opts)
        mse, terms, counts, tokens = torch.zeros((), device=kl.device), {}, [], []
        for hp, out in spliced.sae_outputs.items():
            term = F.mse_loss(out.output, spliced.sae_inputs[hp].to(out.output.dtype).detach())
            mse = mse + term
            terms[f"mse/{hp}"] = term.detach()
            fired = active(out.codes.detach())
            counts.append(count_true_on_device(fired).to(kl.device))
            tokens.append(tokens_of(fired))
        # The balancing rule needs this batch's numbers before the total is formed: one read to
        # the host for all of them (float64 holds fp32 values and counts exactly).
        mse_host, kl_host, *count_host = torch.stack(
            [mse.detach().double(), kl.detach().double(), *(c.double() for c in counts)]).tolist()
        l0 = sum(count / n for count, n in zip(count_host, tokens, strict=True))
        penalised = all(sae.penalised for sae in splice.saes.values())
        self._update(mse_host, kl_host, l0 / len(spliced.sae_outputs), penalised)
        # the balance is set for this batch first: sparsity (and AuxK, prefixes) use lambda_t
        sae_total, sae_terms, codes = sparsity_terms(self, splice, spliced.sae_outputs)
        b, w = self.balance, self.opts.kl_weight
        total = (1 - w) * mse + w * b.kl_scale * kl + sae_total
        terms.update(sae_terms, kl=kl.detach(), kl_scale=torch.tensor(b.kl_scale),
                     **{"lambda": torch.tensor(self.sparsity_coeff * b.lambda_scale)})
        return LossResult(loss=total, terms=terms, codes=codes)

    def _update(self, mse: float, kl: float, l0: float, penalised: bool) -> None:
        """One micro-batch of the balancing rule (numbers averaged over ranks first)."""
        mse, kl, l0 = _mean_over_ranks([mse, kl, l0])
        b = self.balance
        if b.calls < self.opts.balance_steps:
            b.calls += 1
            b.mse_sum, b.kl_sum, b.l0_sum = b.mse_sum + mse, b.kl_sum + kl, b.l0_sum + l0
            if self.opts.kl_coeff is None and b.kl_sum > 0:
                b.kl_scale = b.mse_sum / b.kl_sum
            b.l0_target = b.l0_ema = b.l0_sum / b.calls
        elif penalised and self.opts.l0_tolerance > 0 and b.l0_target > 0:
            b.l0_ema = _L0_EMA * b.l0_ema + (1 - _L0_EMA) * l0
            error = b.l0_ema / b.l0_target - 1
            if abs(error) > self.opts.l0_tolerance / 2:  # inside half the band: leave lambda
                b.lambda_scale *= math.exp(self.opts.l0_rate * error)
        if self.opts.kl_coeff is not None:
            b.kl_scale = self.opts.kl_coeff


def _mean_over_ranks(values: list[float]) -> list[float]:
    """Under torchrun every rank must balance with the same numbers."""
    import torch.distributed as td

    if not (td.is_available() and td.is_initialized()) or td.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device="cuda" if td.get_backend() == "nccl" else "cpu")
    td.all_reduce(t)
    return (t / td.get_world_size()).tolist()
