"""Scores of an explanation: pure functions of predictions and the truth."""

from __future__ import annotations

import math
from collections.abc import Sequence


def accuracy(predicted: Sequence[int], truth: Sequence[int]) -> float:
    if not truth:
        raise ValueError("nothing to score")
    return sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)


def balanced_accuracy(predicted: Sequence[int], truth: Sequence[int]) -> float:
    """Mean of the recall on positives and on negatives (of whichever classes occur)."""
    recalls = []
    for cls in (1, 0):
        rows = [p for p, t in zip(predicted, truth, strict=True) if t == cls]
        if rows:
            recalls.append(sum(p == cls for p in rows) / len(rows))
    if not recalls:
        raise ValueError("nothing to score")
    return sum(recalls) / len(recalls)


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None where either side is constant (undefined)."""
    n = len(x)
    if n != len(y) or n < 2:
        raise ValueError(f"need two equal-length sequences of >= 2 values, got {n} and {len(y)}")
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)
