"""Plugin discovery through plain Python entry points.

Every model adapter, loss and SAE architecture - first-party or not - is found here, by name.
Only the chosen plugin is imported: plugins import torch, and importing all of them at start-up
would be slow.

Set ``SAE_KIT_PLUGINS`` to a comma-separated list of distribution names to load plugins from
those distributions only (the test suite uses this to keep stray local plugins out).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sae_kit.errors import SaeKitError

GROUPS = {
    "models": "sae_kit.models",
    "losses": "sae_kit.losses",
    "architectures": "sae_kit.architectures",
    "trackers": "sae_kit.trackers",
    "explainers": "sae_kit.explainers",
    "model_sources": "sae_kit.model_sources",
}

INSTALL_HINTS = {
    "models": "install an adapter, e.g. `pip install -e plugins/sae-kit-llama`, "
    "or write one (docs/writing-plugins.md)",
    "losses": "write one in two files (docs/writing-plugins.md)",
    "architectures": "write one in two files (docs/writing-plugins.md)",
    "trackers": "write one in two files (sae_kit/trackers/base.py shows one)",
    "explainers": "write one in two files (sae_kit/explainers/base.py shows one)",
    "model_sources": "install one, e.g. `pip install -e plugins/sae-kit-synthetic`, or write "
    "one (sae_kit/model/source.py shows one)",
}


@dataclass(frozen=True)
class PluginInfo:
    group: str
    name: str
    value: str
    distribution: str
    version: str


def _allowed_distributions() -> set[str] | None:
    raw = os.environ.get("SAE_KIT_PLUGINS", "").strip()
    return {d.strip() for d in raw.split(",") if d.strip()} if raw else None


def _dist_name(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.metadata["Name"], dist.version) if dist is not None else ("?", "?")


def discover(kind: str) -> dict[str, EntryPoint]:
    """All installed entry points of one kind ("models", "losses", "architectures") by name.

    Two distributions registering the same name is an error: which one wins would depend on
    install order.
    """
    allowed = _allowed_distributions()
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUPS[kind]):
        dist, _ = _dist_name(ep)
        if allowed is not None and dist not in allowed:
            continue
        if ep.name in found and found[ep.name].value != ep.value:
            other, _ = _dist_name(found[ep.name])
            raise SaeKitError(
                f"two plugins named {ep.name!r} in {GROUPS[kind]}: from {other} and {dist}; "
                "uninstall one of them"
            )
        found[ep.name] = ep
    return found


def list_plugins() -> list[PluginInfo]:
    """Every installed plugin in every group, for `sae-kit plugins`."""
    rows = []
    for kind, group in GROUPS.items():
        for name, ep in sorted(discover(kind).items()):
            dist, version = _dist_name(ep)
            rows.append(PluginInfo(group, name, ep.value, dist, version))
    return rows


def load(kind: str, name: str) -> Any:
    """Import and return the plugin object registered under ``name``."""
    available = discover(kind)
    if name not in available:
        listing = ", ".join(sorted(available)) or "none"
        singular = {"models": "model", "losses": "loss", "architectures": "architecture",
                    "trackers": "tracker", "explainers": "explainer",
                    "model_sources": "model source"}[kind]
        raise SaeKitError(
            f"no {singular} plugin named {name!r}{did_you_mean(name, available)}; installed: "
            f"{listing}. To add one: {INSTALL_HINTS[kind]}"
        )
    try:
        return available[name].load()
    except Exception as exc:  # a broken plugin must not look like a sae-kit bug
        dist, _ = _dist_name(available[name])
        raise SaeKitError(
            f"plugin {name!r} from {dist} failed to import: {type(exc).__name__}: {exc}"
        ) from exc


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'e2e+ds'?)`` for a near miss of one of ``choices``, else ``""``.

    A case or punctuation slip (``E2E``, ``e2e_ds``, ``top-k``) counts as near, as do typos."""
    import difflib

    def plain(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalnum())

    by_plain = {plain(c): c for c in choices}
    if plain(name) in by_plain:
        return f" (did you mean {by_plain[plain(name)]!r}?)"
    close = difflib.get_close_matches(name, list(by_plain.values()), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
