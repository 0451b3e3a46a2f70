"""The one exception type the CLI turns into a single clear line instead of a traceback."""


class SaeKitError(Exception):
    """A problem with the user's input or environment.

    The message says what was wrong and how to mend it, on one line.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty).

    Library errors can span many lines; a SaeKitError quotes only this much of them.
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def counted(n: int, noun: str) -> str:
    """``1 SAE``, ``3 SAEs``: a count with its noun in the right number, never ``SAE(s)``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
