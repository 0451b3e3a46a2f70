"""Which contexts the explainer sees, and which held-out ones score its explanation.

From a feature report (`sae-kit features`): a feature's top contexts and its quantile samples
are each split by rank, even ranks shown to the explainer and odd ranks held out for scoring,
so scoring never uses a context the explainer saw (a held-out context whose tokens equal a shown
one's is dropped). Non-activating contexts come from the run's held-out text: spans of the same
width in which the feature is zero at every token.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError


@dataclass(frozen=True)
class Context:
    tokens: tuple[int, ...]
    """Token ids of the span; -1 where the span runs past the text."""
    acts: tuple[float, ...]
    """The feature's activation at each token of the span."""

    @property
    def activating(self) -> bool:
        return any(a != 0 for a in self.acts)

    @property
    def peak(self) -> float:
        return max((abs(a) for a in self.acts), default=0.0)


@dataclass
class FeatureExamples:
    index: int
    shown: list[Context]
    """Shown to the explainer."""
    held_out: list[Context]
    """Activating contexts the explainer never saw: scoring's positives."""
    quiet: list[Context]
    """Non-activating contexts: detection's negatives."""


def _context(item: dict[str, Any]) -> Context:
    return Context(tuple(int(t) for t in item["tokens"]), tuple(float(a) for a in item["acts"]))


def split_contexts(record: dict[str, Any], n_score: int) -> tuple[list[Context], list[Context]]:
    """(shown, held_out) from one features.jsonl record; held_out alternates top and quantile
    contexts and holds at most ``n_score``."""
    top = [_context(c) for c in record["top"]]
    quantile = [_context(c) for group in record["quantiles"] for c in group["contexts"]]
    shown = top[0::2] + quantile[0::2]
    seen = {c.tokens for c in shown}
    held: list[Context] = []
    for c in _interleave(top[1::2], quantile[1::2]):
        if c.tokens not in seen and c.activating:
            seen.add(c.tokens)
            held.append(c)
    return shown, held[:n_score]


def _interleave(a: list[Context], b: list[Context]) -> list[Context]:
    return [c for i in range(max(len(a), len(b))) for c in a[i:i + 1] + b[i:i + 1]]


def read_summary(report: Path) -> dict[str, Any]:
    try:
        return json.loads((report / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SaeKitError(f"{str(report)!r} holds no readable feature report (summary.json: "
                          f"{exc}); make one with `sae-kit features RUN_DIR`") from None


def iter_records(report: Path, wanted: set[int]) -> Iterator[dict[str, Any]]:
    """The features.jsonl records of ``wanted`` features, streamed (the file can be large)."""
    with (report / "features.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            head = line[:40]
            index = int(head.split('"index":', 1)[1].split(",", 1)[0])
            if index in wanted:
                yield json.loads(line)


def choose_features(summary: dict[str, Any], features: list[int] | None, sample: int,
                    seed: int) -> list[int]:
    """The features to explain: those asked for, or a seeded sample of those that fired."""
    rows = summary["features"]
    if features is not None:
        bad = [f for f in features if not 0 <= f < len(rows)]
        if bad:
            raise SaeKitError(f"--features {bad[0]} is not a feature of this SAE (0 to "
                              f"{len(rows) - 1})")
        dead = [f for f in features if rows[f]["dead"]]
        if dead:
            raise SaeKitError(f"feature {dead[0]} never fired on the report's tokens: there is "
                              "nothing to explain; choose features that fire")
        return sorted(set(features))
    alive = [r["index"] for r in rows if not r["dead"]]
    if not alive:
        raise SaeKitError("no feature of this report ever fired; nothing to explain")
    return sorted(random.Random(seed).sample(alive, min(sample, len(alive))))


def quiet_contexts(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], features: list[int],
                   before: int, after: int, n: int, seed: int) -> dict[int, list[Context]]:
    """Up to ``n`` spans per feature where it is zero at every token of the span.

    ``batches`` yields ([batch, context] token ids, [batch, context, len(features)] codes of
    ``features``). Spans are centred on every token, as the report's contexts are, and run past
    the window's ends as -1 tokens.
    """
    width = before + after + 1
    spans, silent = [], []
    for ids, codes in batches:
        fires = torch.nn.functional.pad((codes != 0).int().transpose(1, 2), (before, after))
        in_span = fires.unfold(2, width, 1).sum(-1).transpose(1, 2)  # [B, T, F]
        spans.append(torch.nn.functional.pad(ids, (before, after), value=-1)
                     .unfold(1, width, 1).reshape(-1, width))
        silent.append((in_span == 0).reshape(-1, len(features)))
    if not spans:
        raise SaeKitError("the run's held-out text has no full window; pass more text")
    all_spans, quiet = torch.cat(spans), torch.cat(silent)
    zeros = (0.0,) * width
    out: dict[int, list[Context]] = {}
    for column, feature in enumerate(features):
        rows = quiet[:, column].nonzero().flatten().tolist()
        picked = random.Random(seed * 1_000_003 + feature).sample(rows, min(n, len(rows)))
        out[feature] = [Context(tuple(all_spans[r].tolist()), zeros) for r in picked]
    return out
