"""Weights & Biases: one W&B run per sae-kit run, named ``PARENT/RUN`` after its directory.

The W&B group is the directory holding the run: a sweep's ``out``, a ``--lambda`` group's
directory, or the folder of lone runs, so a sweep's points group together and two sweeps with
the same point names stay apart.

The project is ``$WANDB_PROJECT`` (default "sae-kit"); ``WANDB_MODE=offline`` writes the run under
the run directory's ``wandb/`` for a later ``wandb sync``. Needs ``pip install wandb`` and, online,
an API key (``WANDB_API_KEY`` or ``wandb login``): checked before the model loads, since W&B's own
check came after it as a 155-line traceback. Starting the W&B run waits at most
``$WANDB_INIT_TIMEOUT`` seconds (default 60), so an unreachable server is one line, not a hang.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sae_kit.errors import SaeKitError, first_line
from sae_kit.trackers.base import Tracker, numbers, require

OFFLINE_MODES = ("offline", "disabled", "dryrun")
"""WANDB_MODE values that never talk to a server, so need no key."""


class WandbTracker(Tracker):
    name = "wandb"

    @classmethod
    def check(cls) -> None:
        require("wandb", cls.name)
        if os.environ.get("WANDB_MODE", "").lower() in OFFLINE_MODES or _has_key():
            return
        raise SaeKitError("the wandb tracker found no W&B API key; set WANDB_API_KEY, run "
                          "`wandb login`, or set WANDB_MODE=offline to log locally and "
                          "`wandb sync` later")

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        wandb = require("wandb", self.name)
        timeout = _init_timeout()
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "sae-kit"),
                                  name=run_name(run_dir), group=run_group(run_dir),
                                  dir=str(run_dir), config=config,
                                  reinit="create_new",
                                  settings=wandb.Settings(init_timeout=timeout))
        except Exception as exc:  # W&B's errors are many types and many lines
            # W&B keeps process-wide settings (server, mode) from its first init: drop them, so
            # a later run in this process (the Python API, a test) reads its own environment.
            wandb.teardown()
            raise SaeKitError(
                f"the wandb tracker could not start a W&B run within {timeout:g} s "
                f"({first_line(exc)}); check the network and WANDB_BASE_URL, or set "
                "WANDB_MODE=offline and `wandb sync` later") from None

    def log(self, row: dict[str, Any]) -> None:
        values = numbers(row)
        step = int(values.pop("step"))
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def run_group(run_dir: Path) -> str:
    """The W&B group of a run: the name of the directory holding it."""
    return Path(run_dir).resolve().parent.name


def run_name(run_dir: Path) -> str:
    """The W&B name of a run: ``group/directory``."""
    return f"{run_group(run_dir)}/{Path(run_dir).resolve().name}"


def _has_key() -> bool:
    """A key in the environment, or in the netrc file `wandb login` writes for the server."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _init_timeout() -> float:
    text = os.environ.get("WANDB_INIT_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise SaeKitError(f"WANDB_INIT_TIMEOUT={text!r} must be a number of seconds > 0")
    return value
