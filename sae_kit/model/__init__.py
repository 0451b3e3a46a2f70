"""The model side: loading a causal LM, hook points, splicing SAEs in, and model adapters.

``loading`` loads a Hugging Face causal LM (Hub id, local directory or the built-in model) and
picks its adapter through the ``sae_kit.models`` plugin group; ``adapter`` is the interface a
model-family plugin implements and ``generic_adapter`` the fallback found by introspection;
``hookpoints`` names the places an SAE reads (residual-stream positions, hook points inside a
layer, module paths) and does their layer arithmetic; ``sublayers`` finds a layer's attention
and MLP for adapters that do not say, ``sites`` the module a hook point inside a layer reads;
``splice`` runs the model with SAEs replacing activations. May import ``architectures`` and the
top-level kernel modules (``errors``, ``plugins``, ``builtin``, ``network``, ``exports``); never
``train``, ``eval``, ``store``, ``losses`` or ``cli``, and never a model family by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sae_kit.exports import lazy_exports

if TYPE_CHECKING:
    from sae_kit.model.adapter import ModelAdapter
    from sae_kit.model.device import resolve_device
    from sae_kit.model.generic_adapter import GenericAdapter
    from sae_kit.model.hookpoints import HookPoint
    from sae_kit.model.loading import LoadedModel, load_model
    from sae_kit.model.splice import RunResult, Splice, SplicedRun

__all__ = [  # what the package offers; each name imported from its module on first use
    "GenericAdapter", "HookPoint", "load_model", "LoadedModel", "ModelAdapter", "resolve_device",
    "RunResult", "Splice", "SplicedRun",
]
_NAMES = {
    "ModelAdapter": "adapter",
    "GenericAdapter": "generic_adapter",
    "HookPoint": "hookpoints",
    "LoadedModel": "loading",
    "load_model": "loading",
    "Splice": "splice",
    "SplicedRun": "splice",
    "RunResult": "splice",
    "resolve_device": "device",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
