"""The paper's SAE: c = ReLU(W_enc x + b_enc), trained with an L1 penalty."""

from __future__ import annotations

import torch

from sae_kit.architectures.base import SAE


class ReluSAE(SAE):
    name = "relu"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_enc.T + self.b_enc)
