"""JSON files written atomically and read with one clear line on failure (no torch import)."""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.store.files import as_umask_says


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file + rename, so a crash never leaves half a file; a temp file
    that a ``kill -9`` left beside ``path`` is deleted by the next write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        as_umask_says(tmp)
        os.replace(tmp, path)
    except BaseException:  # an error or a signal mid-write: no temporary file is left behind
        Path(tmp).unlink(missing_ok=True)
        raise


def sweep_temp_files(path: Path) -> None:
    """Delete ``.NAME.XXXXXXXX``, the temp files ``mkstemp(prefix=".NAME.")`` makes for
    ``path``, left behind by a process killed before its rename (they are never read)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if _TEMP_SUFFIX.fullmatch(stale.name[len(path.name) + 2:]):
            stale.unlink(missing_ok=True)


_TEMP_SUFFIX = re.compile(r"[a-z0-9_]{8}")
"""What tempfile.mkstemp appends to its prefix (8 of its lower-case letters, digits, _)."""


def read_json(path: Path) -> Any:
    """The parsed file; a missing or malformed one raises SaeKitError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SaeKitError(f"{str(path)!r} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SaeKitError(f"{str(path)!r} is corrupt (not valid JSON: {exc})") from None
