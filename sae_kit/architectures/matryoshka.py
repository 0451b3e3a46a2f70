"""Matryoshka BatchTopK SAE (Bussmann et al. 2025, arXiv 2503.09532; SAEBench).

The codes are BatchTopK's (:mod:`sae_kit.architectures.batchtopk`, threshold included). The
dictionary is cut into nested prefixes m_1 < m_2 < ... < n_dict (``prefixes``), and each prefix
alone reconstructs the input: x-hat_m = sum over j < m of c_j d_j + b_dec. The SAE's output is
the full dictionary's, x-hat_{n_dict}, so it is what every loss sees and what is spliced; the
smaller prefixes add, in training,

    prefix_coeff * sum over m < n_dict of MSE(x-hat_m, x)        (element means, as ``local``)

Under ``local`` the loss is then the sum of the prefix terms, the full dictionary's included
(prefix_coeff 1). Under ``e2e`` and ``e2e+ds`` it is the KL (and downstream MSE) of the spliced
full dictionary, plus the smaller prefixes' MSE at the hook point: the early latents are pushed
to reconstruct the activation on their own, the full set to preserve the output. A spliced KL
per prefix would cost one more pass through the later layers per prefix; sae-kit does not do it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sae_kit.architectures.base import SAEOutput
from sae_kit.architectures.batchtopk import BatchTopKOptions, BatchTopKSAE
from sae_kit.architectures.decoder import normalised_decode
from sae_kit.errors import SaeKitError


@dataclass
class MatryoshkaOptions(BatchTopKOptions):
    prefixes: str = field(default="auto", metadata={
        "help": "Nested prefix sizes, increasing, e.g. '64,256,1024'; the full dictionary is "
                "always the last. 'auto': n_dict/16, n_dict/8, n_dict/4, n_dict/2."})
    prefix_coeff: float = field(default=1.0, metadata={
        "help": "Weight of the smaller prefixes' reconstruction MSE."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prefix_coeff >= 0:
            raise SaeKitError(f"prefix_coeff must be 0 or more, got {self.prefix_coeff}")


def prefix_sizes(spec: str, n_dict: int) -> list[int]:
    """The nested prefix sizes, the full dictionary last; one line if they do not nest."""
    if spec == "auto":
        return sorted({max(1, n_dict // d) for d in (16, 8, 4, 2)} | {n_dict})
    try:
        sizes = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise SaeKitError(f"prefixes must be 'auto' or increasing whole numbers like "
                          f"'64,256,1024', got {spec!r}") from None
    if not sizes or sizes[0] < 1 or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise SaeKitError(f"prefixes {spec!r} do not nest: give increasing sizes of at least 1, "
                          "e.g. '64,256,1024'")
    if sizes[-1] > n_dict:
        raise SaeKitError(f"prefix size {sizes[-1]} exceeds the dictionary size {n_dict}; "
                          f"give sizes up to {n_dict}")
    return sizes if sizes[-1] == n_dict else [*sizes, n_dict]


class MatryoshkaSAE(BatchTopKSAE):
    name = "matryoshka"

    Options = MatryoshkaOptions

    def __init__(self, d_in: int, n_dict: int, **options: Any) -> None:
        super().__init__(d_in, n_dict, **options)
        self.prefix_sizes = prefix_sizes(self.opts.prefixes, n_dict)

    def prefix_outputs(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """x-hat_m of each prefix m (the full dictionary's last), from ``codes``."""
        outputs, partial, start = [], self.b_dec, 0
        for end in self.prefix_sizes:
            partial = partial + normalised_decode(codes[..., start:end], self.W_dec[:, start:end])
            outputs.append(partial)
            start = end
        return outputs

    def add_training_terms(self, x: torch.Tensor, out: SAEOutput) -> None:
        smaller = self.prefix_outputs(out.codes)[:-1]
        if smaller:
            mse = torch.stack([F.mse_loss(x_hat, x) for x_hat in smaller]).sum()
            out.aux["matryoshka"] = self.opts.prefix_coeff * mse
        super().add_training_terms(x, out)
