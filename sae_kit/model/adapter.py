"""The interface a model-family plugin implements.

An adapter tells the core where a Hugging Face causal LM keeps its decoder layers and its
unembedding (and, optionally, its final norm), and where each layer keeps its attention and its
MLP. The core needs nothing else: residual-stream hook points are the inputs and outputs of the
decoder layers, ``hook_attn_out`` / ``hook_mlp_out`` the outputs of a layer's attention and MLP
modules and ``hook_mlp_in`` the MLP's input; "run the model from layer i" is done generically by
skipping the layers before i (see :mod:`sae_kit.model.splice`). ``attention`` and ``mlp`` default
to finding the one child module whose name says so (``attn``/``attention``, ``mlp``/``ffn``/
``feed_forward``); an adapter overrides them where that guess is wrong or ambiguous.

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
from sae_kit.model.sublayers import find_sublayer


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

    def attention(self, layer: nn.Module) -> nn.Module:
        """The attention block of one decoder layer (its output is ``hook_attn_out``)."""
        return find_sublayer(layer, "attention", self.describe_family(layer))

    def mlp(self, layer: nn.Module) -> nn.Module:
        """The MLP of one decoder layer (its input is ``hook_mlp_in``, its output
        ``hook_mlp_out``)."""
        return find_sublayer(layer, "mlp", self.describe_family(layer))

    def describe_family(self, layer: nn.Module) -> str:
        """How error messages name the adapter that could not find a layer's parts."""
        return f"{type(layer).__name__} (adapter {type(self).__module__}:{type(self).__qualname__})"

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
