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

from sae_kit.errors import SaeKitError, first_line
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.config import TrainConfig
from sae_kit.record.setting_types import describe, fits

SHORT_FORMS: dict[str, Any] = {"lambda": float | list[float], "layer": int | list[int],
                               "hook": str}
"""Short forms a file may use for TrainConfig fields, and their types (``lambda`` may list
several values where lambdas are read: one SAE each, in one pass)."""

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
            yaml = _yaml()
            try:
                data = yaml.safe_load(path.read_text())
            except yaml.YAMLError as exc:  # not a ValueError; its text spans several lines
                mark = getattr(exc, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise ValueError(f"{getattr(exc, 'problem', None) or exc}{where}") from None
        else:
            raise SaeKitError(f"{str(path)!r}: settings files end in .toml, .json or .yaml")
    except (ValueError, UnicodeDecodeError) as exc:  # TOML, JSON and YAML errors are ValueErrors
        raise SaeKitError(f"{str(path)!r} is not valid {suffix[1:].upper()}: {first_line(exc)}"
                          ) from None
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
    """Short forms expanded, config.json's results dropped; unknown keys and values of the
    wrong type refused in one line naming ``where`` and the key."""
    values = {k: v for k, v in settings.items() if k not in IGNORED}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known - set(SHORT_FORMS))
    if unknown:
        raise SaeKitError(f"{where}: unknown setting(s) {', '.join(unknown)}; the settings are "
                          f"TrainConfig's fields: {', '.join(sorted(known))} (and the short "
                          "forms lambda, layer, hook)")
    for short, hint in SHORT_FORMS.items():
        if short in values and not fits(values[short], hint):
            raise SaeKitError(f"{where}: {short} = {values[short]!r} must be {describe(hint)}")
    for short, full in (("lambda", "sparsity_coeff"), ("layer", "hook_points")):
        if short in values and full in values:
            raise SaeKitError(f"{where}: both {short} and {full} are given; keep one")
    if "lambda" in values:
        values["sparsity_coeff"] = values.pop("lambda")
    hook = values.pop("hook", "resid_pre")
    if "layer" in values:
        layers = values.pop("layer")
        layers = layers if isinstance(layers, list) else [layers]
        values["hook_points"] = [HookPoint(n, hook).name for n in layers]
    if hook not in ("resid_pre", "resid_post"):
        raise SaeKitError(f"{where}: hook = {hook!r} must be resid_pre or resid_post")
    return values


def config_from_settings(settings: dict[str, Any], where: str = "settings") -> TrainConfig:
    """A TrainConfig from a settings table: keys and types checked here, ranges as TrainConfig
    checks them; every error one line naming ``where``."""
    values = normalise(settings, where)
    try:
        return TrainConfig(**values)
    except (TypeError, SaeKitError) as exc:
        raise SaeKitError(f"{where}: {exc}") from None
