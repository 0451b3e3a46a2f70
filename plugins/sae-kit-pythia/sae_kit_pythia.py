"""Pythia adapter for sae-kit (Hugging Face ``GPTNeoXForCausalLM``, ``model_type == "gpt_neox"``).

Rotary embeddings live inside each layer. With ``use_parallel_residual`` (every Pythia model)
a layer computes ``x + attention(ln1(x)) + mlp(ln2(x))``: the MLP reads the layer's *input*, not
``x + attention``, so ``hook_mlp_in`` is ``ln2(x)`` and replacing ``hook_attn_out`` changes
nothing inside the same layer's MLP - only what follows the layer. sae-kit hooks the modules'
own inputs and outputs, so both layouts (parallel or not) are read where the model computes them.
"""

from torch import nn

from sae_kit.model.adapter import ModelAdapter


class GPTNeoXAdapter(ModelAdapter):
    model_type = "gpt_neox"

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.gpt_neox.layers

    def final_norm(self, model: nn.Module) -> nn.Module:
        return model.gpt_neox.final_layer_norm

    def attention(self, layer: nn.Module) -> nn.Module:
        return layer.attention

    def mlp(self, layer: nn.Module) -> nn.Module:
        return layer.mlp

    def unembed(self, model: nn.Module) -> nn.Module:
        # Named `embed_out` in older transformers, `lm_head` in newer: ask the model.
        return model.get_output_embeddings()
