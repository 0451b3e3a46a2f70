"""Interpretability against importance (issue 27): are the features the output depends on the
ones an explainer can describe? Built from the index's rows once both `sae-kit features
--importance` and `sae-kit explain` have written their columns."""

from __future__ import annotations

import math
from typing import Any

import torch

from sae_kit.eval.analysis.attribution import spearman

SCORES = ("detection", "fuzzing", "simulation")
WIDTH, HEIGHT = 300, 180


def interpretability_view(rows: list[dict[str, Any]],
                          explained: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per score that some explained feature has: SVG points (x: log10 of the feature's
    |KL attribution|, y: its score), axis ticks and the Spearman rank correlation."""
    importance = {r["index"]: r.get("importance_kl") for r in rows}
    panels = []
    for score in SCORES:
        # Features with a score and a nonzero importance (log scale): (index, log10 imp., score)
        found = [(i, math.log10(importance[i]), e[score]) for i, e in explained.items()
                 if e.get(score) is not None and importance.get(i)]
        if not found:
            continue
        x = torch.tensor([f[1] for f in found], dtype=torch.float64)
        y = torch.tensor([f[2] for f in found], dtype=torch.float64)
        x_lo, x_hi = math.floor(float(x.min())), math.ceil(float(x.max()))
        x_hi = x_hi if x_hi > x_lo else x_lo + 1
        y_lo, y_hi = (-1.0, 1.0) if score == "simulation" else (0.0, 1.0)
        px = (x - x_lo) / (x_hi - x_lo) * WIDTH
        py = HEIGHT - (y.clamp(y_lo, y_hi) - y_lo) / (y_hi - y_lo) * HEIGHT
        points = [{"cx": round(a, 2), "cy": round(b, 2), "label": f"feature {i}: {v:.2f}"}
                  for (i, _, v), a, b in zip(found, px.tolist(), py.tolist(), strict=True)]
        panels.append({"score": score, "n": len(found), "spearman": spearman(x, y),
                       "points": points, "width": WIDTH, "height": HEIGHT,
                       "y_range": (y_lo, y_hi),
                       "x_ticks": [{"x": round((t - x_lo) / (x_hi - x_lo) * WIDTH, 2),
                                    "label": str(t)} for t in range(x_lo, x_hi + 1)]})
    return panels
