"""The type each training setting must have, checked however the settings arrive.

Flags are typed by the command line, but settings files (TOML, JSON, YAML) and the Python API
hand over whatever they hold, and a dataclass checks none of it: ``batch_size = 2.5`` reached
the trainer, ``seed = 1.5`` was recorded, and ``compile = "false"`` (a non-empty string) turned
compilation on. ``TrainConfig`` checks every field against its annotation here, in
``__post_init__``, so one validator serves flags, files and the API. Numbers of numpy and the
like count (``numbers.Integral`` / ``numbers.Real``); a bool is never a number.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any, Union

_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
          type(None): "unset (null)"}


def wrong_types(config: Any) -> list[str]:
    """``"key = value must be ..."`` for each field of the dataclass ``config`` whose value is
    not of its annotated type."""
    hints = typing.get_type_hints(type(config))
    return [f"{f.name} = {value!r} must be {describe(hints[f.name])}"
            for f in dataclasses.fields(config)
            if not fits(value := getattr(config, f.name), hints[f.name])]


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint`` (the annotations TrainConfig uses)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is Any:
        return True
    if isinstance(value, bool):  # a bool is an int to Python, never a number to a user
        return hint is bool
    if hint is int:
        return isinstance(value, numbers.Integral)
    if hint is float:
        return isinstance(value, numbers.Real)
    return isinstance(value, hint)


def describe(hint: Any) -> str:
    """``int | None`` -> "a whole number or unset (null)"; ``list[str]`` -> "a list of strings"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is list:
        inner = describe(args[0]).removeprefix("a ")
        return f"a list of {inner.replace('number', 'numbers').replace('string', 'strings')}"
    if origin is dict:
        return "a table"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))
