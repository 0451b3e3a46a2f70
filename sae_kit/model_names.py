"""The rule for --model names of models built from options: ``scheme[:key=value,...]``.

A model source (a plugin in the ``sae_kit.model_sources`` group, interface in
:mod:`sae_kit.model.source`) builds a model from its options instead of loading files, and
brings its own token stream: ``--model synthetic:n_features=512,d_model=64``. Such a name is
its own dataset too (the model's tokens are the data). Any name whose part before the first
``:`` is an installed source's name is one; Hub ids and paths never are (a Hub id has no
``:``, and a source named like a drive letter would be refused by nobody but is never shipped).

Torch-free: the CLI and ``TrainConfig`` call this at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from sae_kit import plugins
from sae_kit.errors import SaeKitError


@dataclass(frozen=True)
class SourceRef:
    scheme: str
    """The model source plugin's name."""
    options: dict[str, str]
    """``key=value`` settings, as strings (the plugin types them)."""


def source_ref(name: str) -> SourceRef | None:
    """The source and options ``name`` asks for, or None if it names no installed source."""
    scheme, _, rest = name.partition(":")
    if not scheme or scheme not in plugins.discover("model_sources"):
        return None
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SaeKitError(f"bad option {item!r} in model {name!r}; write "
                              f"{scheme}:key=value,key=value")
        options[key.strip()] = value.strip()
    return SourceRef(scheme, options)
