"""The generic fallback adapter: what it finds, and the one line it gives when it cannot."""

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.model.generic_adapter import GenericAdapter
from tests.helpers import FAST, save_tiny_model


class ToyConfig(PretrainedConfig):
    model_type = "sae_kit_toy"

    def __init__(self, vocab_size=512, hidden_size=16, num_hidden_layers=2,
                 max_position_embeddings=64, stack="attributes", **kwargs):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.max_position_embeddings = max_position_embeddings
        self.stack = stack
        super().__init__(**kwargs)


class ToyForCausalLM(PreTrainedModel):
    """A causal LM a generic adapter cannot read: ``stack`` picks how its layers are held.

    "attributes": one attribute per layer, no nn.ModuleList; "two_lists": two nn.ModuleLists of
    num_hidden_layers modules each, so which is the decoder stack is ambiguous.
    """

    config_class = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        d, n = config.hidden_size, config.num_hidden_layers
        self.embed = nn.Embedding(config.vocab_size, d)
        if config.stack == "two_lists":
            self.blocks = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
            self.gates = nn.ModuleList(nn.Linear(d, d) for _ in range(n))
        else:
            for i in range(n):
                self.add_module(f"block_{i}", nn.Linear(d, d))
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, input_ids=None, **kwargs) -> CausalLMOutput:
        h = self.embed(input_ids)
        for i in range(self.config.num_hidden_layers):
            h = h + torch.tanh(getattr(self, f"block_{i}", None) or self.blocks[i])(h)
        return CausalLMOutput(logits=self.lm_head(self.norm(h)))


AutoConfig.register(ToyConfig.model_type, ToyConfig, exist_ok=True)
AutoModelForCausalLM.register(ToyConfig, ToyForCausalLM, exist_ok=True)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("stack", "problem"),
    [("attributes", "it has 0 nn.ModuleList of length num_hidden_layers=2, not exactly 1"),
     ("two_lists", "it has 2 nn.ModuleList of length num_hidden_layers=2, not exactly 1")],
)
def test_a_model_it_cannot_read_is_one_clear_line_through_the_cli(
    tmp_path, tiny_tokenizer_dir, stack, problem
):
    model = ToyForCausalLM(ToyConfig(stack=stack))
    model_dir = save_tiny_model(model, tiny_tokenizer_dir, tmp_path / "toy")
    result = CliRunner().invoke(app, ["train", "--model", str(model_dir), *FAST])
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.split())
    assert ("no model adapter for model_type 'sae_kit_toy' (installed: gpt2, gpt_neox, llama, "
            "synthetic)") in text
    assert problem in text
    assert "`sae_kit.models` entry point named 'sae_kit_toy'" in text
    assert "docs/writing-plugins.md" in text
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_it_finds_the_parts_of_a_model_with_the_common_layout():
    from tests.tiny_models import build

    model = build("opt")
    adapter = GenericAdapter("opt")
    assert adapter.layers(model) is model.model.decoder.layers
    assert adapter.final_norm(model) is model.model.decoder.final_layer_norm
    assert adapter.unembed(model) is model.lm_head


def test_missing_norm_or_unembedding_is_named():
    model = ToyForCausalLM(ToyConfig(stack="two_lists"))
    del model.norm
    adapter = GenericAdapter("sae_kit_toy")
    model.blocks = model.blocks[:1]  # now exactly one list of the right length
    assert adapter.layers(model) is model.gates
    with pytest.raises(SaeKitError, match="no norm module sits beside its decoder layers"):
        adapter.final_norm(model)
    model.get_output_embeddings = lambda: None
    with pytest.raises(SaeKitError, match=r"get_output_embeddings\(\) returns no module"):
        adapter.unembed(model)
