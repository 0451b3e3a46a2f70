"""The paper's SAE: c = ReLU(W_enc x + b_enc), trained with an L1 penalty."""

from __future__ import annotations

import torch

from sae_kit.architectures.base import SAE, BiasInitOptions


class ReluSAE(SAE):
    name = "relu"

    Options = BiasInitOptions

    def select(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu_()  # a gate: each code is its pre-activation or zero
