"""Progress a person can follow: a live bar on a terminal, timestamped lines anywhere else.

Under nohup, SLURM or ``2> log`` stderr is not a terminal and a live bar shows nothing until the
end, so there sae-kit writes plain ``logging`` lines instead: one when the run directory is
known, one when the model loads, and one every ``SAE_KIT_LOG_SECONDS`` (default 30) seconds of
training or evaluation, plus the last step.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sae_kit.cli.common import err
from sae_kit.progress import Progress as ProgressCallback
from sae_kit.progress import ProgressLines


def stderr_is_terminal() -> bool:
    return err.is_terminal


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
        self.what, self.disable = what, disable
        self.lines = ProgressLines()
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_task(self, description: str, total: int | None = None, completed: int = 0,
                 **fields: Any) -> int:
        self.tasks[len(self.tasks)] = {"description": description, "total": total}
        if not self.disable:  # the phase starts counting here, not at its first update
            self.lines.start(description, completed)
        return len(self.tasks) - 1

    def update(self, task: int, completed: int, total: int | None = None,
               status: str = "") -> None:
        t = self.tasks[task]
        t["total"] = total or t["total"]
        if not self.disable:
            self.lines(t["description"], completed, t["total"], status)

    def stop(self) -> None:
        pass


def progress(what: str, disable: bool = False, transient: bool = False) -> Any:
    """A rich bar on a terminal, else LogLines; both take add_task / update / stop."""
    if not stderr_is_terminal():
        return LogLines(what, disable=disable)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=err,
                    disable=disable, transient=transient)


def callback(bar: Any) -> ProgressCallback:
    """``progress(what, done, total)`` drawn on ``bar``: one task per phase ``what``."""
    tasks: dict[str, int] = {}

    def show(what: str, done: int, total: int | None = None) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total, completed=done, status="")
        bar.update(tasks[what], completed=done, total=total)

    return show
