"""JSON files written atomically and read with one clear line on failure (no torch import)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file + rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The parsed file; a missing or malformed one raises SaeKitError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SaeKitError(f"{str(path)!r} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SaeKitError(f"{str(path)!r} is corrupt (not valid JSON: {exc})") from None
