"""LoRA adapters on the model (sae_kit.model.lora): zero-init, on/off, peft's own loader.

Each test builds the tiny GPT-2 of conftest.py and puts peft's LoRA layers into it; peft is a
dev requirement, so these run in CI (skipped with the reason where it is absent).
"""

from __future__ import annotations

import sys

import pytest
import torch

from sae_kit.errors import SaeKitError
from sae_kit.model.loading import load_model
from sae_kit.model.lora import CONFIG, WEIGHTS, Lora, LoraSpec, peft_module
from sae_kit.store.files import save_tensors

peft = pytest.importorskip("peft", reason="peft is not installed (pip install 'sae-kit[lora]')")


def tokens() -> torch.Tensor:
    return torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(0))


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=tokens()).logits


def nudge(lora: Lora) -> None:
    """Non-zero B everywhere, so the adapters change the model's outputs."""
    with torch.no_grad():
        for p in lora.parameters():
            p.normal_(0, 0.05)


def test_a_fresh_adapter_leaves_the_logits_unchanged_and_trains_only_lora(tiny_gpt2):
    loaded = load_model(str(tiny_gpt2))
    before = logits(loaded.model)
    lora = Lora.add(loaded.model, loaded.adapter, LoraSpec(rank=4), first_layer=1)
    assert torch.equal(logits(loaded.model), before)  # B starts at zero
    names = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert len(lora.parameters()) == len(names)
    # 'after' layer 1: blocks 1 and 2, each with attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
    adapted = sorted({n.split(".lora_")[0] for n in names})
    assert adapted == [f"transformer.h.{i}.{m}" for i in (1, 2)
                       for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


def test_disabled_is_the_original_model_and_enabled_is_not(tiny_gpt2):
    loaded = load_model(str(tiny_gpt2))
    before = logits(loaded.model)
    lora = Lora.add(loaded.model, loaded.adapter, LoraSpec(rank=4, layers="all"), first_layer=2)
    assert lora.first_layer == 0
    nudge(lora)
    assert not torch.allclose(logits(loaded.model), before)
    with lora.disabled():
        assert torch.equal(logits(loaded.model), before)
    assert not torch.allclose(logits(loaded.model), before)  # on again after


def test_targets_pick_dense_layers_by_name_ending(tiny_gpt2):
    loaded = load_model(str(tiny_gpt2))
    Lora.add(loaded.model, loaded.adapter, LoraSpec(rank=2, targets=("c_attn", "mlp.c_proj")), 2)
    adapted = sorted({n.split(".lora_")[0] for n, _ in loaded.model.named_parameters()
                      if "lora_" in n})
    assert adapted == ["transformer.h.2.attn.c_attn", "transformer.h.2.mlp.c_proj"]


def test_an_unknown_target_is_one_line_listing_the_valid_ones(tiny_gpt2):
    loaded = load_model(str(tiny_gpt2))
    with pytest.raises(SaeKitError) as err:
        Lora.add(loaded.model, loaded.adapter, LoraSpec(targets=("q_proj",)), first_layer=1)
    line = str(err.value)
    assert "\n" not in line and "--lora-target q_proj" in line
    assert "attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj" in line


def test_no_block_after_the_sae_is_one_line(tiny_gpt2):
    loaded = load_model(str(tiny_gpt2))
    with pytest.raises(SaeKitError, match="no block comes after the SAE .*--lora-layers all"):
        Lora.add(loaded.model, loaded.adapter, LoraSpec(), first_layer=3)


def test_saved_adapters_load_in_peft_itself_with_identical_logits(tiny_gpt2, tmp_path):
    loaded = load_model(str(tiny_gpt2))
    lora = Lora.add(loaded.model, loaded.adapter, LoraSpec(rank=4, alpha=8.0), first_layer=1)
    nudge(lora)
    ours = logits(loaded.model)
    lora.save(tmp_path / "lora", base_model=str(tiny_gpt2), write_tensors=save_tensors)
    assert {p.name for p in (tmp_path / "lora").iterdir()} >= {WEIGHTS, CONFIG}

    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2)).eval()
    theirs = peft.PeftModel.from_pretrained(base, str(tmp_path / "lora")).eval()
    torch.testing.assert_close(logits(theirs), ours, rtol=0, atol=1e-6)

    again = load_model(str(tiny_gpt2))  # and back into sae-kit
    back = Lora.load(again.model, again.adapter, tmp_path / "lora")
    assert back.first_layer == 1
    torch.testing.assert_close(logits(again.model), ours, rtol=0, atol=0)


def test_adapter_state_round_trips_and_a_foreign_one_is_refused(tiny_gpt2):
    loaded = load_model(str(tiny_gpt2))
    lora = Lora.add(loaded.model, loaded.adapter, LoraSpec(rank=4), first_layer=1)
    nudge(lora)
    state = lora.state_dict()
    other = load_model(str(tiny_gpt2))
    twin = Lora.add(other.model, other.adapter, LoraSpec(rank=4), first_layer=1)
    twin.load_state_dict(state)
    assert torch.equal(logits(other.model), logits(loaded.model))
    narrow = Lora.add(load_model(str(tiny_gpt2)).model, loaded.adapter, LoraSpec(rank=4), 2)
    with pytest.raises(SaeKitError, match="do not fit this model's adapted layers"):
        narrow.load_state_dict(state)


def test_without_peft_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError
    with pytest.raises(SaeKitError) as err:
        peft_module()
    assert str(err.value) == "LoRA needs peft, which is not installed: pip install " \
                             "'sae-kit[lora]'"
