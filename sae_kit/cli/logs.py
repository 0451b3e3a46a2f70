"""Progress a person can follow: a live bar on a terminal, timestamped lines anywhere else.

Under nohup, SLURM or ``2> log`` stderr is not a terminal and a live bar shows nothing until the
end, so there sae-kit writes plain ``logging`` lines instead: one when the run directory is
known, one when the model loads, and one every ``SAE_KIT_LOG_SECONDS`` (default 30) seconds of
training or evaluation, plus the last step.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import timedelta
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sae_kit.cli.common import err
from sae_kit.errors import SaeKitError

DEFAULT_SECONDS = 30.0


def stderr_is_terminal() -> bool:
    return err.is_terminal


def log_seconds() -> float:
    text = os.environ.get("SAE_KIT_LOG_SECONDS", "").strip()
    try:
        value = float(text) if text else DEFAULT_SECONDS
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise SaeKitError(f"SAE_KIT_LOG_SECONDS must be a number of seconds >= 0, got {text!r}")
    return value


def setup_logging() -> None:
    """sae-kit's own log lines (the ``sae_kit`` logger) on stderr; timestamps off a terminal."""
    logger = logging.getLogger("sae_kit")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _Stderr()
    fmt = "%(message)s" if stderr_is_terminal() else "%(asctime)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at each line (a test runner swaps it per command)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class LogLines:
    """The part of rich's Progress that sae-kit uses, writing a log line now and then instead."""

    def __init__(self, what: str, disable: bool = False) -> None:
        self.logger = logging.getLogger("sae_kit")
        self.what, self.disable = what, disable
        self.every = log_seconds()
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: int | None = None, completed: int = 0,
                 **fields: Any) -> int:
        now = time.monotonic()
        self.tasks[len(self.tasks)] = {"description": description, "total": total,
                                       "completed": completed, "first": completed,
                                       "started": now, "logged": now, "status": ""}
        return len(self.tasks) - 1

    def update(self, task: int, completed: int, total: int | None = None,
               status: str = "") -> None:
        t = self.tasks[task]
        t.update(completed=completed, total=total or t["total"], status=status)
        now = time.monotonic()
        if self.disable or (now - t["logged"] < self.every and completed != t["total"]):
            return
        t["logged"] = now
        self.logger.info("%s %s", t["description"], _line(t, now))

    def stop(self) -> None:
        pass


def _line(t: dict[str, Any], now: float) -> str:
    done, total = t["completed"], t["total"]
    text = f"{done}/{total}" if total else str(done)
    if total:
        text += f" ({100 * done / total:.0f}%)"
        rate = (done - t["first"]) / max(now - t["started"], 1e-9)
        if rate > 0 and done < total:
            text += f", {_time_left((total - done) / rate)} left"
    return f"{text}  {t['status']}".rstrip()


def _time_left(seconds: float) -> str:
    """h:mm:ss, or a bound where timedelta ends (``--n-samples 99999999999999999999`` is a
    valid, if endless, run and must not overflow the progress line)."""
    if seconds >= timedelta.max.total_seconds():
        return f"more than {timedelta.max.days:,} days"
    return str(timedelta(seconds=round(seconds)))


def progress(what: str, disable: bool = False, transient: bool = False) -> Any:
    """A rich bar on a terminal, else LogLines; both take add_task / update / stop."""
    if not stderr_is_terminal():
        return LogLines(what, disable=disable)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=err,
                    disable=disable, transient=transient)
