"""What every command shares: error reporting and the stderr console."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from sae_kit.errors import SaeKitError, full_disk

OFF_TERMINAL_WIDTH = 10_000
"""Off a terminal (a pipe, a log file) there is no width to fit: rich would assume 80 columns
and cut table cells and break paths across lines. Lines are as long as they need instead."""


class _Console(Console):
    """rich's Console, except that off a terminal nothing is wrapped or cut (unless COLUMNS)."""

    @property
    def size(self) -> ConsoleDimensions:
        if not self.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
            return ConsoleDimensions(OFF_TERMINAL_WIDTH, super().size.height)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def out_console(stderr: bool = False) -> Console:
    """The console for a command's output (stdout) or its logs (stderr)."""
    return _Console(stderr=stderr)


# Logs and progress go to stderr; results go to stdout so they can be piped.
err = out_console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Turn SaeKitError, and a write that failed on a full disk, into one `error: ...` line on
    stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            line = exc if isinstance(exc, SaeKitError) else full_disk(exc)
            if line is None:
                raise
            err.print(f"[bold red]error:[/] {escape(str(line))}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def parse_key_values(pairs: list[str], what: str) -> dict[str, str]:
    """`key=value` strings to a dict, with one clear line for a malformed one."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SaeKitError(f"{what} must look like key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def parse_floats(text: str, what: str) -> list[float]:
    """`0.5,1,2` to [0.5, 1.0, 2.0], with one clear line for a malformed list."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SaeKitError(f"{what} takes numbers separated by commas, got {text!r}") from None
    if not values:
        raise SaeKitError(f"{what} needs at least one number")
    return values
