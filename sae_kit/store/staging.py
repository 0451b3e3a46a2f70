"""Output directories written whole or not at all: built in a hidden sibling, then moved in.

    with staged_dir(out, "feature report", last="index.html") as tmp:
        ...write every file into tmp...
    # out now holds the new files; on an error or a signal out is as it was and tmp is gone

A report half written by a full disk looked finished. Building it beside ``out`` and moving
its entries in only once every one is written leaves the old report or the new one; the entry
named ``last`` (the one a reader opens) moves in last. Entries of ``out`` that the command does
not write (``sae-kit explain``'s explanations.json) stay. The staging directory is made first,
before any model loads, so an unwritable ``--out`` fails at once; one left by ``kill -9`` is
deleted by the next run. No torch import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sae_kit.errors import SaeKitError
from sae_kit.store.files import as_umask_says


def make_staging(out: Path, what: str) -> Path:
    """The hidden sibling directory ``out`` is built in; one line if it cannot be made."""
    if out.exists() and not out.is_dir():
        raise SaeKitError(f"--out {str(out)!r} is a file; choose a directory for the {what}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in out.parent.glob(f".{out.name}.staging-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
        as_umask_says(tmp)
    except OSError as exc:  # read-only, under a file, /proc, ...
        raise SaeKitError(f"cannot write the {what} in {str(out)!r} "
                          f"({exc.strerror or type(exc).__name__}); choose a writable --out"
                          ) from None
    return tmp


def publish(tmp: Path, out: Path, last: str) -> None:
    """Move every entry of the finished ``tmp`` into ``out``, ``last`` at the end."""
    if not out.exists():
        tmp.rename(out)
        return
    for entry in sorted(tmp.iterdir(), key=lambda p: p.name == last):
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():  # a directory cannot be replaced
            old = tmp.with_name(f"{tmp.name}-old-{entry.name}")
            target.rename(old)
            entry.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)
    tmp.rmdir()


@contextlib.contextmanager
def staged_dir(out: Path, what: str, last: str, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a staging directory for ``out`` (``tmp`` when already made); publish it on
    success, delete it on any error or signal."""
    tmp = tmp or make_staging(out, what)
    try:
        yield tmp
        publish(tmp, out, last)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
