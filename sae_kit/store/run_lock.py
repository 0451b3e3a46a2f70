"""One process at a time per run directory: an exclusive lock on ``RUN_DIR/.lock``.

Whoever trains or resumes a run holds it until training ends. The lock is an ``flock`` on an
open file (the ``filelock`` package), so the kernel releases it when its holder dies, even by
``kill -9``: a killed run never leaves a stale lock behind. No torch import.
"""

from __future__ import annotations

from pathlib import Path

from sae_kit.errors import SaeKitError
from sae_kit.store.run_dir import RunDir

LOCK = ".lock"


def lock_run(path: str | Path):  # -> filelock.BaseFileLock (imported lazily)
    """Take the run's lock now, or raise one clear line if another process holds it."""
    from filelock import FileLock, Timeout

    lock_file = RunDir(path).path / LOCK
    lock = FileLock(lock_file, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SaeKitError(
            f"another sae-kit process is training {str(path)!r} right now (it holds "
            f"{str(lock_file)!r}); wait for it to end, or train into another --out"
        ) from None
    except OSError as exc:
        raise unwritable_run_dir(path, exc) from None
    return lock


def unwritable_run_dir(path: str | Path, exc: OSError) -> SaeKitError:
    return SaeKitError(f"cannot write the run directory {str(path)!r} "
                       f"({exc.strerror or type(exc).__name__}); choose a writable --out")


def claim_new_dir(base: Path) -> Path:
    """Create ``base``, or ``base-2``, ``base-3``, ... : a directory no other run has.

    ``mkdir`` fails when the name exists, so two runs named in the same second never share
    one (the default name has one-second resolution).
    """
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise unwritable_run_dir(candidate, exc) from None
    raise SaeKitError(f"could not find a free run directory name next to {str(base)!r}")
