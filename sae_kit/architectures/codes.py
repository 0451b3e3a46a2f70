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


def count_active(codes: torch.Tensor) -> int:
    """How many codes are active, without materialising the mask (same rule as :func:`active`)."""
    return int(torch.count_nonzero(codes))
