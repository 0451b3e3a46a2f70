"""Llama adapter for sae-kit (Hugging Face ``LlamaForCausalLM``, ``model_type == "llama"``).

Rotary embeddings, grouped-query attention and RMSNorm live inside the layers (the rotary
tables are computed once by the model and handed to every layer), so the residual stream
between layers is all sae-kit touches.
"""

from torch import nn

from sae_kit.model.adapter import ModelAdapter


class LlamaAdapter(ModelAdapter):
    model_type = "llama"

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def final_norm(self, model: nn.Module) -> nn.Module:
        return model.model.norm

    def attention(self, layer: nn.Module) -> nn.Module:
        return layer.self_attn

    def mlp(self, layer: nn.Module) -> nn.Module:
        return layer.mlp

    def unembed(self, model: nn.Module) -> nn.Module:
        return model.lm_head
