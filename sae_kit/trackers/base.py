"""The interface every experiment tracker implements.

A tracker plugin, registered as
``[project.entry-points."sae_kit.trackers"] csv = "my_tracker:CsvTracker"``::

    class CsvTracker(Tracker):
        name = "csv"

        def __init__(self, run_dir, config):
            self.file = (run_dir / "metrics.csv").open("a")

        def log(self, row):
            self.file.write(f"{row['step']},{row['loss']}\\n")

        def close(self):
            self.file.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from sae_kit.errors import SaeKitError


class Tracker:
    name: ClassVar[str] = ""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        """Open the tracker's record of the run in ``run_dir`` (``config``: its config.json)."""

    @classmethod
    def check(cls) -> None:
        """Raise SaeKitError (one line) when the tracker cannot start here - its package is
        missing, it has no credentials. Called before the model loads; the default checks
        nothing."""

    def log(self, row: dict[str, Any]) -> None:
        """One metrics row, as metrics.jsonl holds it (``row["step"]`` is the optimizer step)."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and finish; called once, at the end or when training stops."""


def require(package: str, tracker: str) -> Any:
    """Import an optional package, or one line naming what to install."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        pip = package.split(".")[0]
        raise SaeKitError(f"the {tracker} tracker needs the {pip} package: pip install {pip}"
                          ) from None


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The row's numeric entries (trackers plot numbers)."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def check_trackers(names: list[str]) -> None:
    """Each chosen tracker's plugin found and able to start: one line before the model loads,
    not a traceback after it."""
    from sae_kit import plugins

    for name in names:
        plugins.load("trackers", name).check()


def open_trackers(names: list[str], run_dir: Path, config: dict[str, Any]) -> list[Tracker]:
    """The chosen trackers, by plugin name, opened on ``run_dir``."""
    from sae_kit import plugins

    return [plugins.load("trackers", name)(run_dir, config) for name in names]
