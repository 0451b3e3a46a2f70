"""KL(p_original || p_with_SAE) over next-token distributions, averaged over token positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence(clean_logits: torch.Tensor, sae_logits: torch.Tensor) -> torch.Tensor:
    """sum_v p(v) (log p(v) - log q(v)), p from the original model, q from the spliced one.

    Averaged over every token position (all leading dimensions). Computed in fp32.
    """
    log_p = F.log_softmax(clean_logits.float(), dim=-1)
    log_q = F.log_softmax(sae_logits.float(), dim=-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    return per_token.mean()
