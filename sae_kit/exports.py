"""Public names of a package, imported when first used.

``from sae_kit.model import Splice`` imports only ``sae_kit.model.splice``: a package's
``__init__`` stays cheap, and importing ``sae_kit.train`` (for its config, say) does not import
torch. A package lists its names and the module defining each::

    __all__ = ["HookPoint", "Splice"]
    __getattr__, __dir__ = lazy_exports(__name__, {"HookPoint": "hookpoints", "Splice": "splice"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package`` exporting ``names``.

    ``names`` maps each public name to the submodule (relative to ``package``) defining it. No
    name may equal a submodule's: importing the submodule would shadow it.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
