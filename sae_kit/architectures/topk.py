"""TopK SAE: exactly the k largest ReLU pre-activations are kept, so no sparsity penalty is needed.

c = TopK_k(ReLU(W_enc x + b_enc)): every other code is zero. Sparsity is set by k, not by lambda,
so ``sparsity_penalty`` is 0 and any loss (local, e2e, e2e+ds, ...) trains it unchanged.
``auxk=true`` adds the AuxK dead-latent loss (:mod:`sae_kit.architectures.auxk`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sae_kit.architectures.auxk import AuxK, AuxKOptions
from sae_kit.architectures.base import SAE, BiasInitOptions, SAEOutput
from sae_kit.architectures.sparse import KeptCodes
from sae_kit.errors import SaeKitError


@dataclass
class TopKOptions(BiasInitOptions, AuxKOptions):
    k: int = field(default=32, metadata={"help": "Active latents per token (the L0)."})

    def __post_init__(self) -> None:
        BiasInitOptions.__post_init__(self)
        AuxKOptions.__post_init__(self)


class TopKSAE(AuxK, SAE):
    name = "topk"
    penalised = False
    sparsity_options = ("k",)

    Options = TopKOptions

    def __init__(self, d_in: int, n_dict: int, **options: Any) -> None:
        super().__init__(d_in, n_dict, **options)
        if not 1 <= self.opts.k <= n_dict:
            raise SaeKitError(
                f"{self.name} option k={self.opts.k} must be between 1 and the dictionary size "
                f"{n_dict}"
            )
        self.init_auxk()

    def select(self, pre: torch.Tensor) -> KeptCodes:
        top = pre.relu_().topk(self.opts.k, dim=-1)
        # A gate: the k kept codes equal their pre-activations, so only they get gradients.
        # The codes reuse pre's buffer: zeroing memory already touched is cheaper than a fresh
        # [tokens, n_dict] zeros (0.07 s a step at GPT-2 small's shape, docs/performance.md).
        codes = pre.zero_().scatter_(-1, top.indices, top.values)
        row_starts = torch.arange(0, pre.numel(), pre.shape[-1], device=pre.device)
        return KeptCodes(codes, top.indices + row_starts.reshape(-1, 1))

    def add_training_terms(self, x: torch.Tensor, out: SAEOutput) -> None:
        self.auxk_terms(x, out)

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        """Zero: k already fixes the sparsity."""
        return codes.new_zeros(())
