"""Catch a non-finite loss or gradient before it reaches the SAE weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError


class NonFinite(Exception):
    """Raised by a training step, before the optimizer update, naming what went non-finite."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(what)


def nonfinite_term(result: Any) -> str | None:
    """The first logged term of a LossResult (then the total) that is NaN or infinite."""
    items = [*result.terms.items(), ("loss", result.loss)]
    for name, value in items:
        number = float(value.detach())
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
