"""The synthetic model: generated activation -> a network that reads only F -> logits.

    input ids -> embed (FeatureGenerator: a = sum_i c_i f_i) -> layer 0 (passes a on)
              -> layer 1 (reads only F's subspace: z = P_F a; r = Q_F (z + W2 relu(W1 z + b1)))
              -> lm_head (logits = U z', reading F's subspace only)

Layer 0 passes the activation through so that the default hook point (the middle layer,
``blocks.1.hook_resid_pre``) is where the ground truth lives. Because layer 1 and the
unembedding only see ``P_F a`` and F's directions are orthogonal to the others', removing a
feature outside F leaves the output exactly as it was; removing one in F changes it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.modeling_outputs import CausalLMOutput

from sae_kit.model.adapter import ModelAdapter
from sae_kit_synthetic.generator import FeatureGenerator, context_keys
from sae_kit_synthetic.options import SyntheticOptions

GROUND_TRUTH_POSITION = 1
"""Residual-stream position of the generated activation (input of layer 1)."""
LOGIT_SCALE = 3.0
"""Logit standard deviation per unit of F signal: the output is far from uniform (KL has
something to measure) without being so peaked that the token stream repeats itself."""


class SyntheticConfig(PretrainedConfig):
    model_type = "synthetic"


class _Embed(nn.Module):
    """Input ids -> the generated activation (codes from the hashed context)."""

    def __init__(self, generator: FeatureGenerator) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("directions", generator.directions.clone())

    def codes(self, input_ids: torch.Tensor) -> torch.Tensor:
        o = self.generator.options
        return self.generator.codes(context_keys(input_ids, o.vocab, o.seed))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.codes(input_ids) @ self.directions


class _PassLayer(nn.Module):
    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return hidden_states


class _ReadF(nn.Module):
    """A residual MLP on the F subspace; everything outside it is dropped."""

    def __init__(self, basis_f: torch.Tensor, hidden: int, g: torch.Generator) -> None:
        super().__init__()
        d_f = basis_f.shape[1]
        self.register_buffer("basis_f", basis_f.clone())
        self.register_buffer("w_in", torch.randn(hidden, d_f, generator=g) / d_f**0.5)
        self.register_buffer("b_in", -0.5 * torch.rand(hidden, generator=g))
        self.register_buffer("w_out", torch.randn(d_f, hidden, generator=g) / hidden**0.5)

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        z = hidden_states @ self.basis_f
        z = z + torch.relu(z @ self.w_in.T + self.b_in) @ self.w_out.T
        return z @ self.basis_f.T


class SyntheticModel(nn.Module):
    """A causal "LM" in the shape sae-kit runs: ``model(input_ids=...)`` returns ``.logits``."""

    def __init__(self, options: SyntheticOptions) -> None:
        super().__init__()
        self.options = options
        self.config = SyntheticConfig(hidden_size=options.d_model, vocab_size=options.vocab,
                                      max_position_embeddings=options.context)
        self.generator = FeatureGenerator(options)
        g = torch.Generator().manual_seed(options.seed + 1)
        self.embed = _Embed(self.generator)
        basis_f = self.generator.functional_basis
        self.layers = nn.ModuleList([_PassLayer(), _ReadF(basis_f, options.hidden, g)])
        unembed = torch.randn(options.vocab, options.d_functional, generator=g)
        self.lm_head = nn.Linear(options.d_model, options.vocab, bias=False)
        self.lm_head.weight.data = LOGIT_SCALE * unembed @ basis_f.T

    def logits_from(self, activation: torch.Tensor) -> torch.Tensor:
        """Logits from a ground-truth activation (no hooks): for generating tokens and tests."""
        return self.lm_head(self.layers[1](activation))

    def forward(self, input_ids: torch.Tensor, **kwargs: object) -> CausalLMOutput:
        hidden = self.embed(input_ids)
        for layer in self.layers:
            hidden = layer(hidden)
        return CausalLMOutput(logits=self.lm_head(hidden))


class SyntheticAdapter(ModelAdapter):
    model_type = "synthetic"

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.layers

    def unembed(self, model: nn.Module) -> nn.Module:
        return model.lm_head


class SyntheticTokenizer:
    """Token ids shown as ``t17``; the model reads no text."""

    eos_token_id = None

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def __len__(self) -> int:
        return self.vocab

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return f"t{int(token_id)}"

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.convert_ids_to_tokens(i) for i in ids)
