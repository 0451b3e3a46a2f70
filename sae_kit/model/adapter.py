"""The interface a model-family plugin implements.

An adapter tells the core where a Hugging Face causal LM keeps its decoder layers and its
unembedding (and, optionally, its final norm). The core needs nothing else: residual-stream hook
points are the inputs and outputs of the decoder layers, and "run the model from layer i" is done
generically by skipping the layers before i (see :mod:`sae_kit.model.splice`).

A complete model plugin (``sae_kit_opt.py``), registered in its ``pyproject.toml`` under the
model's ``config.model_type`` as ``[project.entry-points."sae_kit.models"] opt =
"sae_kit_opt:OPTAdapter"``::

    from torch import nn
    from sae_kit.model.adapter import ModelAdapter

    class OPTAdapter(ModelAdapter):
        model_type = "opt"

        def layers(self, model: nn.Module) -> nn.ModuleList:
            return model.model.decoder.layers

        def unembed(self, model: nn.Module) -> nn.Module:
            return model.lm_head
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from sae_kit.errors import SaeKitError


class ModelAdapter:
    """Where the parts of one model family live. Adapters hold no state."""

    model_type: ClassVar[str] = ""

    def layers(self, model: nn.Module) -> nn.ModuleList:
        """The decoder layers, in order. Each takes the residual stream as its first input."""
        raise NotImplementedError

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        """Optional: the norm between the last layer and the unembedding, or None if unknown.

        Training and evaluation never call it (the unembedding is applied to the last layer's
        output through ``unembed``, whose input hook sees the normed stream); the adapter tests
        use it to compare hooked activations with ``output_hidden_states``.
        """
        return None

    def unembed(self, model: nn.Module) -> nn.Module:
        """The module mapping normed final hidden states to logits (usually ``lm_head``)."""
        raise NotImplementedError

    def d_model(self, model: nn.Module) -> int:
        """Width of the residual stream."""
        return int(model.config.hidden_size)

    def n_layers(self, model: nn.Module) -> int:
        return len(self.layers(model))

    def describe(self, model: nn.Module) -> str:
        """Which adapter runs ``model``, recorded in a run's config.json."""
        return f"{type(self).__module__}:{type(self).__qualname__}"

    def check(self, model: nn.Module) -> None:
        """Raise SaeKitError (one line) if this adapter cannot find ``model``'s parts."""
        try:
            layers, unembed = self.layers(model), self.unembed(model)
            fits = isinstance(layers, nn.ModuleList) and len(layers) > 0
            problem = "" if fits and isinstance(unembed, nn.Module) else "no layers or unembedding"
        except AttributeError as exc:  # e.g. an attribute path from another family
            problem = str(exc)
        if problem:
            raise SaeKitError(
                f"model adapter {self.describe(model)} does not fit this "
                f"{model.config.model_type!r} model ({problem}); fix or uninstall it"
            )
