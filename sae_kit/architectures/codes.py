"""When a code is active: it is non-zero. One rule for L0 everywhere.

Training statistics, evaluation metrics and the sparse kernels' density check all count active
codes through these functions. Non-zero, not positive: a third-party architecture may emit
negative codes, and those are active too.
"""

from __future__ import annotations

import torch


def active(codes: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the active codes (same shape as ``codes``)."""
    return codes != 0


def count_true_on_device(mask: torch.Tensor) -> torch.Tensor:
    """How many entries of a boolean mask are set, as an int64 scalar where the mask is."""
    # Per row in int32 (a row holds at most n_dict entries), then the rows' total in int64: on
    # CPU a bool -> int64 sum of a [tokens, n_dict] mask, and count_nonzero, each took ~3x as
    # long (the int64 conversion is a copy of the whole mask).
    rows = mask.reshape(-1, mask.shape[-1]) if mask.dim() else mask.reshape(1, 1)
    return rows.sum(-1, dtype=torch.int32).sum(dtype=torch.int64)


def count_true(mask: torch.Tensor) -> int:
    """How many entries of a boolean mask are set."""
    return int(count_true_on_device(mask))


def tokens_of(mask: torch.Tensor) -> int:
    """How many tokens (all but the last dimension) a code mask covers."""
    return mask.reshape(-1, mask.shape[-1]).shape[0]


def mean_per_token(mask: torch.Tensor) -> float:
    """Mean over tokens (all but the last dimension) of a mask's set entries: L0 of a code mask."""
    return count_true(mask) / tokens_of(mask)


def fired_and_count(codes: torch.Tensor, listed: tuple[torch.Tensor, ...] | None = None
                    ) -> tuple[torch.Tensor, int]:
    """Which latents fired on any token ([n_dict] mask) and how many codes are active.

    ``listed`` is the sparse kernels' (rows, cols, values) of the non-zero codes
    (``SAEOutput.active``) when there is one: the same figures without a pass over every code.
    """
    n_dict = codes.shape[-1]
    if listed is None:
        mask = active(codes.detach()).reshape(-1, n_dict)
        return mask.any(0), count_true(mask)
    cols = listed[1]
    fired = torch.zeros(n_dict, dtype=torch.bool, device=codes.device)
    return fired.index_fill_(0, cols, True), cols.numel()
