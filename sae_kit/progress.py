"""Progress of long work, in one shape for the command line and the Python API.

A *progress callback* is called as ``progress(what, done, total)``: ``what`` names the phase
("training", "reading text", "writing report", ...), ``done`` counts what is finished of
``total`` (None when the end is not known). The long-running functions take one —
:func:`sae_kit.train_saes` (its ``on_step``), ``evaluate_run``, ``build_feature_report``,
``run_sweep`` — and with none given they log through the standard :mod:`logging` module instead::

    import logging
    logging.basicConfig(level=logging.INFO)   # sae-kit's progress lines appear on stderr

The CLI passes a rich bar on a terminal and :class:`ProgressLines` anywhere else (nohup,
SLURM, ``2> log``), where a live bar would show nothing until the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sae_kit.errors import SaeKitError

Progress = Callable[[str, int, "int | None"], None]
"""``progress(what, done, total)``: see the module doc."""

DEFAULT_SECONDS = 30.0
"""Seconds between two lines of one phase: a 7-minute sweep says something 14 times."""


def log_seconds() -> float:
    """``SAE_KIT_LOG_SECONDS`` (default 30; 0: every update), checked."""
    text = os.environ.get("SAE_KIT_LOG_SECONDS", "").strip()
    try:
        value = float(text) if text else DEFAULT_SECONDS
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise SaeKitError(f"SAE_KIT_LOG_SECONDS must be a number of seconds >= 0, got {text!r}")
    return value


class ProgressLines:
    """A progress callback that writes ``what 120/400 (30%), 0:01:10 left  status`` to the
    ``sae_kit`` logger: at a phase's first update, then every ``every`` seconds, and at its end.
    """

    def __init__(self, every: float | None = None, logger: logging.Logger | None = None) -> None:
        self.every = log_seconds() if every is None else every
        self.logger = logger or logging.getLogger("sae_kit")
        self.phases: dict[str, dict[str, Any]] = {}

    def start(self, what: str, done: int = 0) -> None:
        """Begin a phase now: its first line comes ``every`` seconds later (or at its end)."""
        now = time.monotonic()
        self.phases[what] = {"first": done, "started": now, "logged": now}

    def __call__(self, what: str, done: int, total: int | None = None, status: str = "") -> None:
        now = time.monotonic()
        phase = self.phases.get(what)
        if phase is None or done < phase["first"]:  # a new phase, or the same name again
            phase = self.phases[what] = {"first": done, "started": now, "logged": None}
        ended = total is not None and done >= total
        if phase["logged"] is not None and now - phase["logged"] < self.every and not ended:
            return
        if ended and phase.get("ended"):
            return  # the end is said once
        phase.update(logged=now, ended=ended)
        self.logger.info("%s %s", what, progress_text(done, total, phase, now, status))


def progress_text(done: int, total: int | None, phase: dict[str, Any], now: float,
                  status: str = "") -> str:
    """``120/400 (30%), 0:01:10 left  status``: the ETA from the rate since the phase began."""
    text = f"{done:,}/{total:,}" if total else f"{done:,}"
    if total:
        text += f" ({100 * done / total:.0f}%)"
        rate = (done - phase["first"]) / max(now - phase["started"], 1e-9)
        if rate > 0 and done < total:
            with contextlib.suppress(OverflowError):  # an absurd total: no ETA, no crash
                text += f", {timedelta(seconds=round((total - done) / rate))} left"
    return f"{text}  {status}".rstrip()
