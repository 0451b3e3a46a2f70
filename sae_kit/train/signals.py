"""Stop training cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler's pre-emption).

The first signal only sets a flag: the trainer finishes the current step, writes a checkpoint
and raises ``Interrupted``; the CLI then exits with code 128 + the signal number (130 for
SIGINT, 143 for SIGTERM), the shell's convention for "killed by this signal". A second signal
exits at once with the same code, without saving (the last complete checkpoint stays valid,
since checkpoints are written atomically).

This module imports nothing heavy, so it stays cheap to test in a bare subprocess.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    return 128 + signum


class StopFlag:
    """Set by the first SIGINT/SIGTERM; the training loop reads it between steps."""

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self.announce = announce

    def handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            if self.announce:
                _say(f"\nsecond signal ({name}): exiting now without saving\n")
            os._exit(exit_code(signum))  # "at once": no unwinding, no waiting on other ranks
        self.signum = signum
        if self.announce:
            _say(f"\n{name} received: stopping after this step and saving a checkpoint "
                 f"(send it again to exit at once)\n")


def _say(text: str) -> None:
    # os.write, not print: print inside a signal handler can deadlock on stderr's lock.
    os.write(2, text.encode())


@contextlib.contextmanager
def stop_on_signals(announce: bool = True) -> Iterator[StopFlag]:
    """Catch SIGINT/SIGTERM while the block runs; restore the previous handlers after.

    ``announce``: say on stderr what a signal does (only one rank of many should).
    """
    flag = StopFlag(announce)
    if threading.current_thread() is not threading.main_thread():
        yield flag  # Python only delivers signals to the main thread
        return
    previous = {sig: signal.signal(sig, flag.handle) for sig in SIGNALS}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(
        self, signum: int, run_dir: Path, step: int, checkpoint: Path | None, world_size: int = 1
    ) -> None:
        self.signum = signum
        self.run_dir = run_dir
        self.step = step
        self.checkpoint = checkpoint
        self.world_size = world_size
        super().__init__(self.message())

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)

    def message(self) -> str:
        name = signal.Signals(self.signum).name
        saved = f"checkpoint saved in {self.checkpoint}" if self.checkpoint else "no checkpoint"
        launcher = "sae-kit"
        if self.world_size > 1:  # resume needs the same world size
            launcher = f"torchrun <the same {self.world_size}-process options> -m sae_kit"
        return (f"stopped by {name} after step {self.step}; {saved}; continue with: "
                f"{launcher} train --resume {shlex.quote(str(self.run_dir))}")
