"""Alive dictionary elements: those that fire on at least one of many tokens.

A rarely firing element looks dead on a small sample, so alive elements are counted over more
tokens than the other metrics: by default the first 500k tokens of the dataset's *training*
part (the reference's ``act_frequency_n_tokens`` in its GPT-2 configs; it, too, counted on
training tokens), or all of it when it is shorter. Firing or not needs no held-out text, and the
training part is the one large enough for the count; it is read in dataset order, not in the
run's shuffled order, so every run on a dataset is counted on the same tokens.
Each SAE sees the clean activation at its hook point (as if spliced alone).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sae_kit.eval.metrics import fired
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.splice import Splice


def alive_window_count(n_tokens: int, context: int) -> int:
    """Whole windows within ``n_tokens`` (at least one), as the reference rounds down."""
    return max(1, n_tokens // context)


def count_alive(
    splice: Splice,
    windows: list[list[int]],
    batch_size: int,
    device: torch.device,
    on_batch: Callable[[], None] | None = None,
) -> dict[HookPoint, torch.Tensor]:
    """Per SAE, a boolean mask over its dictionary: fired on at least one token of ``windows``."""
    sites = splice.sae_sites
    masks: dict[HookPoint, torch.Tensor] = {}
    for start in range(0, len(windows), batch_size):
        ids = torch.tensor(windows[start:start + batch_size], dtype=torch.long, device=device)
        # Only the layers up to the last SAE run: no logits are needed.
        acts = splice.clean(ids, capture=sites, final_hidden=False).acts
        for hp, sae in splice.saes.items():
            mask = fired(sae.encode(acts[hp.site].to(sae.W_enc.dtype))).cpu()
            masks[hp] = mask | masks[hp] if hp in masks else mask
        if on_batch:
            on_batch()
    return masks
