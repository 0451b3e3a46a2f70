"""Catch a non-finite loss or gradient before it reaches the SAE weights.

A lone run stops at once with one line (:func:`stop_error`). A run trained with others (a
``--lambda a,b,c`` group, a sweep) stops alone: it gets no update at that step, its directory
gets ``failed.json`` (step, reason, error line), and the others train to the end; then
:class:`MembersStopped` carries one line per stopped run. Group resume and ``sae-kit sweep``
read ``failed.json`` and leave such a run as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_kit.errors import SaeKitError
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import RunDir

if TYPE_CHECKING:
    from sae_kit.train.stats import HostValues

FAILED_FORMAT = "sae-kit-failed/1"


def nonfinite_term(values: HostValues) -> str | None:
    """The first logged term of a micro-batch (then the total) that is NaN or infinite."""
    for name, number in [*values.terms.items(), ("loss", values.loss)]:
        if not math.isfinite(number):
            return f"loss term {name!r} = {number}"
    return None


def stop_error(what: str, step: int, last_checkpoint: Path | None) -> SaeKitError:
    """The one line the user sees; the weights were not updated with the bad step."""
    kept = (f"the last good checkpoint is {last_checkpoint}" if last_checkpoint
            else "no checkpoint was saved before it")
    return SaeKitError(
        f"non-finite {what} at step {step}; stopped without updating the weights and {kept}; "
        "lower --lr or --lambda, or check the data"
    )


class MembersStopped(SaeKitError):
    """Raised after the other runs of a group finished and were saved: one line per run that
    stopped on a non-finite step."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


def record_failure(run_dir: Path, step: int, reason: str, error: str) -> None:
    """``failed.json``: this run stopped at ``step`` and why (written atomically)."""
    write_json_atomic(RunDir(run_dir).failed,
                      {"format": FAILED_FORMAT, "step": step, "reason": reason, "error": error})


def read_failure(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``failed.json``, or None when it has not stopped on a non-finite step."""
    path = RunDir(run_dir).failed
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except SaeKitError:  # not JSON, not UTF-8: the same advice as for wrong fields
        data = None
    fields = {"step": int, "reason": str, "error": str}
    if (not isinstance(data, dict) or data.get("format") != FAILED_FORMAT
            or not all(isinstance(data.get(k), t) and not isinstance(data.get(k), bool)
                       for k, t in fields.items())):
        raise SaeKitError(f"{str(path)!r} is not a readable sae-kit failure record (damaged or "
                          "edited); delete it to resume that run")
    return data


def retry_hint(run_dir: str | Path) -> str:
    """How to train a stopped run again (the same settings stop the same way)."""
    return (f"to train it again, delete {run_dir} (and lower its lr or lambda: the same "
            "settings stop at the same step)")
