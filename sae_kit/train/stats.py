"""Running training statistics between two log records: loss terms, L0, alive features."""

from __future__ import annotations

import functools
import json
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae_kit.architectures.codes import fired_and_count
from sae_kit.losses.base import LossResult


def step_status(row: dict[str, Any] | None) -> str:
    """``12,345 tok/s  loss 0.1234  L0 31.2`` from a metrics row; a group's members side by
    side (``loss 0.1234/0.2345  L0 31.2/12.0``), never summed."""
    if not row:
        return ""
    loss = [f"{v:.4f}" for k, v in row.items() if k == "loss" or k.startswith("loss@")]
    l0 = [f"{v:.1f}" for k, v in row.items() if k.startswith("l0/")]
    return f"{row['tokens_per_s']:,.0f} tok/s  loss {'/'.join(loss)}  L0 {'/'.join(l0)}"


@dataclass(frozen=True)
class HostValues:
    """A micro-batch's loss and logged terms as Python floats: the statistics and the NaN
    guard both read these, so each term crosses from the device once."""

    loss: float
    terms: dict[str, float]

    @classmethod
    def of(cls, result: LossResult) -> HostValues:
        """One copy to the host (one device sync) for the total and every term."""
        device = result.loss.device
        values = [torch.as_tensor(v, device=device).detach().reshape(())
                  for v in (result.loss, *result.terms.values())]
        wide = functools.reduce(torch.promote_types, (v.dtype for v in values))
        numbers = torch.stack([v.to(wide) for v in values]).tolist()  # exact: widening only
        return cls(numbers[0], dict(zip(result.terms, numbers[1:], strict=True)))


class StepStats:
    """Averages over the micro-batches since the last record."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        self.tokens = 0
        self.fired: dict[str, torch.Tensor] = {}
        self.started = time.perf_counter()

    def add(self, result: LossResult, n_tokens: int, values: HostValues | None = None) -> None:
        """Count one micro-batch; ``values``: its terms already read to the host."""
        values = values or HostValues.of(result)
        self.count += 1
        self.tokens += n_tokens
        self.sums["loss"] += values.loss
        for name, value in values.terms.items():
            self.sums[name] += value
        for hp, codes in result.codes.items():
            fired, n_active = fired_and_count(codes, result.active.get(hp))
            self.sums[f"l0/{hp}"] += n_active / (codes.numel() // codes.shape[-1])
            key = str(hp)
            self.fired[key] = fired | self.fired[key] if key in self.fired else fired

    def record(self, **extra: Any) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        row: dict[str, Any] = dict(extra)
        row.update({k: v / max(self.count, 1) for k, v in self.sums.items()})
        for key, fired in self.fired.items():
            row[f"alive/{key}"] = int(fired.sum())
        row["tokens_per_s"] = self.tokens / elapsed
        self.reset()
        return row


class MetricsLog:
    """Append-only JSONL, one record per line, flushed so a crash loses nothing written; each
    row goes to the run's experiment trackers too (sae_kit.trackers)."""

    def __init__(self, path: Path, trackers: Sequence[Any] = ()) -> None:
        self.path = path
        self.trackers = list(trackers)

    def rewind(self, offset: int) -> str | None:
        """Cut the log back to ``offset`` bytes (its length at a checkpoint) for a resume.

        Rows after it were logged by the run that was killed and are logged again. A last row
        cut mid-line (the file lost its tail) is dropped too, since appending to it would leave
        one unreadable row. Returns a warning when rows that belong before ``offset`` are gone.
        """
        if not self.path.exists():
            return None
        size = self.path.stat().st_size
        if size > offset:
            os.truncate(self.path, offset)
            size = offset
        with self.path.open("rb") as f:
            data = f.read()
        keep = data.rfind(b"\n") + 1  # 0 when there is no complete row
        if keep == size:
            return None if size == offset else (
                f"{self.path} is shorter than when the checkpoint was saved ({size} of {offset} "
                "bytes): some rows before it are lost; training continues")
        os.truncate(self.path, keep)
        return (f"{self.path} ended in a half-written row ({size - keep} bytes, as when a write "
                "is cut off); dropped it, so rows before the checkpoint may be missing")

    def write(self, row: dict[str, Any]) -> None:
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:  # a full disk: name the file (a failed write names none)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        for tracker in self.trackers:
            tracker.log(row)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
