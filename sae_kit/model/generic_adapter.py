"""The fallback model adapter: finds a causal LM's parts by introspection.

sae-kit uses it when no plugin is registered for a model's ``config.model_type``. Most Hugging
Face decoder-only models share one layout, so three rules find the parts without naming any
model family:

- decoder layers: the one ``nn.ModuleList`` whose length is ``config.num_hidden_layers``;
- unembedding: ``model.get_output_embeddings()``;
- final norm: the last norm module registered beside the layer list (same parent module).

When a rule finds nothing, or more than one candidate, the error says in one line which adapter
is missing and how to write it. A run's ``config.json`` records where the parts were found.
What introspection cannot see: a model that changes the logits after its unembedding (e.g.
soft-capping) would be trained on the uncapped logits.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from sae_kit.errors import SaeKitError
from sae_kit.model.adapter import ModelAdapter


class GenericAdapter(ModelAdapter):
    """Finds the parts of a model whose family has no adapter plugin."""

    def __init__(self, model_type: str, installed: Sequence[str] = ()) -> None:
        self.family = model_type
        self.installed = list(installed)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        n = _num_layers(model)
        if n is None:
            raise self._cannot("its config has no integer num_hidden_layers")
        found = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
        if len(found) != 1:
            raise self._cannot(
                f"it has {len(found)} nn.ModuleList of length num_hidden_layers={n}, not exactly 1"
            )
        return found[0]

    def final_norm(self, model: nn.Module) -> nn.Module:
        layers = self.layers(model)
        parent = next(m for m in model.modules() if any(c is layers for c in m.children()))
        norms = [c for c in parent.children() if "norm" in type(c).__name__.lower()]
        if not norms:
            raise self._cannot("no norm module sits beside its decoder layers")
        return norms[-1]

    def unembed(self, model: nn.Module) -> nn.Module:
        get = getattr(model, "get_output_embeddings", None)
        out = get() if callable(get) else None
        if not isinstance(out, nn.Module):
            raise self._cannot("get_output_embeddings() returns no module")
        return out

    def describe(self, model: nn.Module) -> str:
        names = {module: name for name, module in model.named_modules()}
        return (f"generic (layers: {names[self.layers(model)]}, "
                f"unembedding: {names[self.unembed(model)]})")

    def _cannot(self, problem: str) -> SaeKitError:
        installed = ", ".join(self.installed) or "none"
        return SaeKitError(
            f"no model adapter for model_type {self.family!r} (installed: {installed}), and the "
            f"generic one cannot find its parts: {problem}. Write one in two files, a "
            f"`sae_kit.models` entry point named {self.family!r} and a module "
            "(docs/writing-plugins.md)"
        )


def _num_layers(model: nn.Module) -> int | None:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "num_hidden_layers", None)
    return n if isinstance(n, int) and n > 0 else None
