"""Alive dictionary elements: those that fire on at least one of many tokens.

A rarely firing element looks dead on a small sample, so alive elements are counted over more
tokens than the other metrics: by default the first 500k tokens of the dataset's *training*
part (the reference's ``act_frequency_n_tokens`` in its GPT-2 configs; it, too, counted on
training tokens), or all of it when it is shorter. Firing or not needs no held-out text, and the
training part is the one large enough for the count; it is read in dataset order, not in the
run's shuffled order, so every run on a dataset is counted on the same tokens.
Each SAE sees the clean activation at its hook point (as if spliced alone).

One rule for every command that counts: `sae-kit eval`, `sae-kit features` (whose default text
is this one; its dead features are the others) and `sae-kit compare` (``--alive-tokens``) read
the same whole windows of the training part and call an element alive when it fired
(:func:`sae_kit.eval.metrics.fired`) on at least one of their tokens, so the same budget gives
the same count. Every other metric stays on held-out tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

from sae_kit.eval.metrics import fired
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.splice import Splice


def alive_window_count(n_tokens: int, context: int) -> int:
    """Whole windows within ``n_tokens`` (at least one), as the reference rounds down."""
    return max(1, n_tokens // context)


class AliveCounter:
    """Per key (a hook point, an SAE's index), the elements that fired on any token added."""

    def __init__(self) -> None:
        self.masks: dict[Hashable, torch.Tensor] = {}

    def add(self, key: Hashable, codes: torch.Tensor) -> None:
        mask = fired(codes).cpu()
        self.masks[key] = mask | self.masks[key] if key in self.masks else mask


def count_alive(
    splice: Splice,
    windows: list[list[int]],
    batch_size: int,
    device: torch.device,
    on_batch: Callable[[], None] | None = None,
) -> dict[HookPoint, torch.Tensor]:
    """Per SAE, a boolean mask over its dictionary: fired on at least one token of ``windows``."""
    sites = splice.sae_sites
    counter = AliveCounter()
    for start in range(0, len(windows), batch_size):
        ids = torch.tensor(windows[start:start + batch_size], dtype=torch.long, device=device)
        # Only the layers up to the last SAE run: no logits are needed.
        acts = splice.clean(ids, capture=sites, final_hidden=False).acts
        for hp, sae in splice.saes.items():
            counter.add(hp, sae.encode(acts[hp.site].to(sae.W_enc.dtype)))
        if on_batch:
            on_batch()
    return counter.masks  # type: ignore[return-value]
