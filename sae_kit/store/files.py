"""Files as the user's umask says: temporary files are born private, finished ones are not.

``tempfile.mkstemp`` creates 0600 files and ``mkdtemp`` 0700 directories whatever the umask, so
a run written through them could not be read by colleagues on a shared filesystem. Everything
sae-kit writes via a temporary name gets the mode a plain ``open`` / ``mkdir`` would have given
before it is renamed into place. No torch import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_umask_says(path: str | Path) -> None:
    """Give ``path`` (a file or a directory) the mode it would have had without mkstemp."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` via a temporary file + rename, with the umask's mode (never half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        as_umask_says(tmp)
        os.replace(tmp, path)
    except BaseException:  # an error or a signal mid-write: no temporary file is left behind
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(tensors: dict[str, Any], path: str | Path,
                 metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, then the umask's mode: safetensors writes 0600."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    as_umask_says(path)
