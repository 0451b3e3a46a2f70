"""Plugin options: a dataclass per plugin, filled from ``key=value`` strings.

Losses and SAE architectures declare an ``Options`` dataclass; each field (with
``metadata={"help": ...}``) becomes a ``--loss-option`` / ``--arch-option`` setting on the
command line. Values arrive as strings from the CLI and as JSON values from a saved config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sae_kit.errors import SaeKitError


def parse_options(cls: type, raw: dict[str, Any], owner: str) -> Any:
    """Build an options dataclass from strings or values, with one clear line on bad input."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        key = key.replace("-", "_")
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise SaeKitError(f"unknown option {key!r} for {owner!r}; it takes: {known}")
        values[key] = _coerce(value, fields[key], owner)
    return cls(**values)


def _coerce(value: Any, f: dataclasses.Field, owner: str) -> Any:
    if not isinstance(value, str):
        return value
    default = f.default if f.default is not dataclasses.MISSING else None
    kind = type(default) if default is not None else str
    try:
        if kind is bool:
            if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return value.lower() in {"true", "1", "yes"}
        return kind(value)
    except ValueError:
        article = "an" if kind.__name__[0] in "aeiou" else "a"
        raise SaeKitError(
            f"option {f.name!r} of {owner!r} must be {article} {kind.__name__}, got {value!r}"
        ) from None


def describe_options(cls: type) -> list[dict[str, Any]]:
    """Name, type, default and help of each option, for `sae-kit plugins --options`."""
    rows = []
    for f in dataclasses.fields(cls):
        default = None if f.default is dataclasses.MISSING else f.default
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append({"name": f.name, "type": kind, "default": default,
                     "help": f.metadata.get("help", "")})
    return rows
