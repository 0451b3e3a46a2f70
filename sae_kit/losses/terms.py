"""Loss terms the first-party losses share: the output KL, its options, and the SAEs' sparsity.

``e2e`` and ``e2e+ds`` both take :class:`KLOptions` and compute :func:`output_kl`; every loss sums
its SAEs' penalties with :func:`sparsity_terms`. A third-party loss may use them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sae_kit.architectures.base import SAEOutput
from sae_kit.errors import SaeKitError
from sae_kit.losses.base import Loss
from sae_kit.losses.chunked_kl import DEFAULT_CACHE_MB, DEFAULT_CHUNK, unembed_kl
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.splice import RunResult, Splice, SplicedRun


@dataclass
class KLOptions:
    kl_chunk: int = field(
        default=DEFAULT_CHUNK,
        metadata={"help": "Tokens per chunk of the fused unembedding + KL; bounds its memory."},
    )
    kl_cache_mb: float = field(
        default=DEFAULT_CACHE_MB,
        metadata={"help": "Several SAEs in one pass: the clean output distribution is computed "
                          "once per batch and kept for all of them up to this many MB "
                          "(0: each recomputes it)."},
    )

    def __post_init__(self) -> None:
        if self.kl_chunk < 1:
            raise SaeKitError(f"kl_chunk must be at least 1, got {self.kl_chunk}")
        if not self.kl_cache_mb >= 0:
            raise SaeKitError(f"kl_cache_mb must be 0 or more, got {self.kl_cache_mb}")


def output_kl(splice: Splice, clean: RunResult, spliced: SplicedRun,
              options: KLOptions) -> torch.Tensor:
    """KL(original || spliced) from the two passes' final hidden states, chunked over tokens.

    In a shared pass (``splice.shared``) the clean side is computed once for all its SAEs."""
    cache = clean.derived if splice.shared is not None else None
    return unembed_kl(splice.unembed, clean.final_hidden, spliced.final_hidden,
                      options.kl_chunk, cache, options.kl_cache_mb)


def sparsity_terms(
    loss: Loss, splice: Splice, sae_outputs: dict[HookPoint, SAEOutput]
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[HookPoint, torch.Tensor]]:
    """Sum of each SAE's sparsity penalty and own terms, plus their log terms and codes."""
    total = 0.0
    terms, codes = {}, {}
    for hp, out in sae_outputs.items():
        sae_total, sae_terms = loss.sae_terms(hp, splice.saes[hp], out)
        total = total + sae_total
        terms.update(sae_terms)
        codes[hp] = out.codes
    return total, terms, codes
