"""The one exception type the CLI turns into a single clear line instead of a traceback, and
the small rules of user-facing messages (an exception's first line, a warning on stderr)."""

import errno
import os
import re
import sys


class SaeKitError(Exception):
    """A problem with the user's input or environment.

    The message says what was wrong and how to mend it, on one line.
    """


def warn_stderr(message: str) -> None:
    """A warning off the CLI (the Python API, library code): one ``warning: ...`` line on
    stderr. The CLI passes its own, styled for the terminal, where a ``warn`` is taken."""
    print(f"warning: {message}", file=sys.stderr)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty).

    Library errors can span many lines; a SaeKitError quotes only this much of them.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def counted(n: int, noun: str) -> str:
    """``1 SAE``, ``3 SAEs``: a count with its noun in the right number, never ``SAE(s)``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


FULL_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
"""No space left, a file-size limit (``ulimit -f``), a disk quota."""


def os_error_of(exc: BaseException) -> OSError | None:
    """``exc`` as an OSError: itself, or the one safetensors wraps in its own type (whose text
    ends in ``(os error N)``); None for any other error."""
    if isinstance(exc, OSError):
        return exc
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if type(exc).__name__ != "SafetensorError" or found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code))


def full_disk(exc: BaseException, mend: str = "free disk space, then run the command again"
              ) -> SaeKitError | None:
    """The one line for a write that failed on a full disk, a quota or a size limit (None for
    any other error)."""
    io = os_error_of(exc)
    if io is None or io.errno not in FULL_DISK_ERRNOS:
        return None
    where = f" {io.filename!r}" if io.filename else ""
    return SaeKitError(f"could not write{where} ({os.strerror(io.errno)}); {mend}")
