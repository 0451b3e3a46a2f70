"""Settings files: TOML (or JSON, or YAML when PyYAML is installed) to a TrainConfig.

    sae-kit train --config run.toml --seed 1       # flags given on the command line win
    sae-kit train --config runs/X/config.json      # a run's config.json reruns it

Keys are TrainConfig's field names, as config.json writes them, plus two short forms:
``lambda`` for ``sparsity_coeff`` and ``layer`` (a number or a list) for ``hook_points`` at
``hook`` (resid_pre unless given). config.json's ``resolved`` block (what the settings came to)
is ignored. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.config import TrainConfig

IGNORED = {"resolved"}
"""Keys of config.json that record results, not settings."""


def read_settings(path: str | Path) -> dict[str, Any]:
    """The table in a .toml, .json, .yaml or .yml file; one line for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise SaeKitError(f"settings file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = _toml().loads(path.read_text())
        elif suffix == ".json":
            data = json.loads(path.read_text())
        elif suffix in (".yaml", ".yml"):
            data = _yaml().safe_load(path.read_text())
        else:
            raise SaeKitError(f"{str(path)!r}: settings files end in .toml, .json or .yaml")
    except (ValueError, UnicodeDecodeError) as exc:  # TOML, JSON and YAML errors are ValueErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SaeKitError(f"{str(path)!r} is not valid {suffix[1:].upper()}: {first}") from None
    if not isinstance(data, dict):
        raise SaeKitError(f"{str(path)!r} must hold a table of settings")
    return data


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # the same parser, for Python 3.10

    return tomli


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise SaeKitError("YAML settings need PyYAML: pip install pyyaml (or use TOML)") from None
    return yaml


def normalise(settings: dict[str, Any], where: str = "settings") -> dict[str, Any]:
    """Short forms expanded, config.json's results dropped, unknown keys refused in one line."""
    values = {k: v for k, v in settings.items() if k not in IGNORED}
    if "lambda" in values:
        values["sparsity_coeff"] = values.pop("lambda")
    hook = values.pop("hook", "resid_pre")
    if "layer" in values:
        layers = values.pop("layer")
        layers = layers if isinstance(layers, list) else [layers]
        values["hook_points"] = [HookPoint(int(n), hook).name for n in layers]
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SaeKitError(f"{where}: unknown setting(s) {', '.join(unknown)}; the settings are "
                          f"TrainConfig's fields: {', '.join(sorted(known))}")
    return values


def config_from_settings(settings: dict[str, Any], where: str = "settings") -> TrainConfig:
    """A TrainConfig from a settings table (validated as TrainConfig validates)."""
    try:
        return TrainConfig(**normalise(settings, where))
    except TypeError as exc:
        raise SaeKitError(f"{where}: {exc}") from None
