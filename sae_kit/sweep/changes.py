"""Refuse a sweep point whose directory holds a run of other settings than the sweep asks for.

A point's directory is named by what varies in the sweep, so editing a setting that is not in
the name (n_samples, lr, an architecture option, ...) keeps the name; without this check the
old run would be skipped as finished, or resumed, under the new settings' name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.config import TrainConfig, trained_settings
from sae_kit.record.run_record import RunRecord
from sae_kit.store.run_dir import RunDir
from sae_kit.sweep.spec import Point


def check_unchanged(points: Sequence[Point], sweep_file: str) -> None:
    """One line naming the first point whose saved config.json differs from its settings now:
    the setting(s), old → new, and how to mend it."""
    for point in points:
        layout = RunDir(point.config.output_dir or "")
        if not layout.is_run():
            continue
        saved = layout.read()
        old, new = _settings(saved), _settings_now(point.config, saved)
        changed = [f"{name} {_show(old, name)} → {_show(new, name)}"
                   for name in sorted(set(old) | set(new)) if old.get(name, _UNSET) !=
                   new.get(name, _UNSET)]
        if changed:
            raise SaeKitError(
                f"sweep point {point.name!r} in {layout} was trained with other settings than "
                f"{sweep_file} now asks for: {', '.join(changed)}; delete {layout} to train it "
                "with the new settings, or give the sweep a new `out`"
            )


def _settings(saved: RunRecord) -> dict[str, Any]:
    """A run's settings that matter, as JSON values; an option a newer sae-kit added is filled
    in with its default, as for the sweep's side."""
    try:
        return trained_settings(_resolved(saved.config).to_dict())
    except SaeKitError:  # its loss or architecture is not installed: compare it as written
        return trained_settings(saved.config.to_dict())


def _settings_now(config: TrainConfig, saved: RunRecord) -> dict[str, Any]:
    """The point's settings with the defaults a run fills in, as its config.json would say."""
    resolved = _resolved(config)
    if not resolved.hook_points:  # the model's default layer
        resolved.hook_points = [HookPoint.default(saved.resolved.n_layers).name]
    return trained_settings(resolved.to_dict())


def _resolved(config: TrainConfig) -> TrainConfig:
    from sae_kit.train.build import make_loss, resolve_defaults

    return resolve_defaults(config, make_loss(config))


_UNSET = object()


def _show(settings: dict[str, Any], name: str) -> str:
    return json.dumps(settings[name]) if name in settings else "(unset)"
