"""Tiny causal LMs of several families (3 layers, width 32, vocab 512), random weights.

GPT-2 comes from the ``tiny_gpt2`` fixture; the others are built here. Each family keeps the
feature that makes it differ from GPT-2: Pythia's partial rotary embeddings and parallel
residual, Llama's and Qwen2's grouped-query attention (fewer key/value heads than query heads)
with RMSNorm, OPT's learned positions with an offset, BLOOM's ALiBi attention, norm after the
embedding and decoder layers that return tuples.
"""

from __future__ import annotations

from typing import Any

_SIZES = dict(vocab_size=512, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
              max_position_embeddings=64, bos_token_id=0, eos_token_id=0)

# family -> (config class, model class, extra config fields), all from `transformers`.
SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 {"intermediate_size": 64, "rotary_pct": 0.25, "use_parallel_residual": True}),
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              {"intermediate_size": 64, "num_key_value_heads": 2}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              {"intermediate_size": 64, "num_key_value_heads": 2}),
    "opt": ("OPTConfig", "OPTForCausalLM",
            {"ffn_dim": 64, "word_embed_proj_dim": 32, "pad_token_id": 1}),
    "bloom": ("BloomConfig", "BloomForCausalLM", {}),
}


def build(family: str):
    """A tiny randomly initialised model of ``family`` (seeded, so every build is the same)."""
    import torch
    import transformers

    config_name, model_name, extra = SPECS[family]
    config = getattr(transformers, config_name)(**_SIZES, **extra)
    torch.manual_seed(0)
    return getattr(transformers, model_name)(config)
