"""Pythia adapter for sae-kit (Hugging Face ``GPTNeoXForCausalLM``, ``model_type == "gpt_neox"``).

Rotary embeddings and the parallel attention + MLP residual live inside each layer, so the
residual stream between layers is all sae-kit touches.
"""

from torch import nn

from sae_kit.model.adapter import ModelAdapter


class GPTNeoXAdapter(ModelAdapter):
    model_type = "gpt_neox"

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.gpt_neox.layers

    def final_norm(self, model: nn.Module) -> nn.Module:
        return model.gpt_neox.final_layer_norm

    def unembed(self, model: nn.Module) -> nn.Module:
        # Named `embed_out` in older transformers, `lm_head` in newer: ask the model.
        return model.get_output_embeddings()
