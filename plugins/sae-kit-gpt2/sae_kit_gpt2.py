"""GPT-2 adapter for sae-kit (Hugging Face ``GPT2LMHeadModel``, ``config.model_type == "gpt2"``)."""

from torch import nn

from sae_kit.model.adapter import ModelAdapter


class GPT2Adapter(ModelAdapter):
    model_type = "gpt2"

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.transformer.h

    def final_norm(self, model: nn.Module) -> nn.Module:
        return model.transformer.ln_f

    def attention(self, layer: nn.Module) -> nn.Module:
        return layer.attn

    def mlp(self, layer: nn.Module) -> nn.Module:
        return layer.mlp

    def unembed(self, model: nn.Module) -> nn.Module:
        return model.lm_head
