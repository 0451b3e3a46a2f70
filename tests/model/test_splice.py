"""The generic splicing machinery, on a tiny GPT-2 loaded from disk."""

import pytest
import torch

from sae_kit.architectures.relu import ReluSAE
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import load_model
from sae_kit.model.splice import ModelRunner, Splice
from tests.helpers import identity_sae


@pytest.fixture(scope="module")
def loaded(tiny_gpt2):
    return load_model(str(tiny_gpt2))


@pytest.fixture(scope="module")
def ids(loaded):
    torch.manual_seed(1)
    return torch.randint(0, 512, (2, 16))


@pytest.mark.parametrize("position", [0, 1, 2, 3])
def test_captured_stream_equals_hidden_states(loaded, ids, position):
    runner = ModelRunner(loaded.model, loaded.adapter)
    run = runner.run(ids, capture=[position], final_hidden=False)
    with torch.no_grad():
        hidden = loaded.model(ids, output_hidden_states=True).hidden_states
    expected = hidden[position]
    got = run.acts[position]
    if position == 3:  # HF's last hidden state is after the final norm
        got = loaded.adapter.final_norm(loaded.model)(got)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("hook", ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre",
                                  "blocks.2.hook_resid_post"])
def test_identity_sae_leaves_logits_unchanged(loaded, ids, hook):
    splice = Splice(loaded.model, loaded.adapter, {HookPoint.parse(hook): identity_sae(32, 8)})
    with torch.no_grad():
        reference = loaded.model(ids).logits
        spliced = splice.logits(splice.spliced(ids).final_hidden)
    assert (spliced - reference).abs().max().item() < 1e-5


def test_spliced_pass_from_cached_activation_equals_full_pass(loaded, ids):
    torch.manual_seed(0)
    saes = {HookPoint(1): ReluSAE(32, 64), HookPoint(2): ReluSAE(32, 64)}
    splice = Splice(loaded.model, loaded.adapter, saes)
    clean = splice.clean(ids, capture=[1])
    fast = splice.spliced(ids, capture=[3], clean=clean)
    full = splice.spliced(ids, capture=[3])
    torch.testing.assert_close(fast.final_hidden, full.final_hidden)
    torch.testing.assert_close(fast.acts[3], full.acts[3])
    for hp in saes:
        torch.testing.assert_close(fast.sae_outputs[hp].codes, full.sae_outputs[hp].codes)


def test_layers_are_restored_after_a_skipped_pass(loaded, ids):
    layers = list(loaded.adapter.layers(loaded.model))
    splice = Splice(loaded.model, loaded.adapter, {HookPoint(2): ReluSAE(32, 8)})
    splice.spliced(ids, clean=splice.clean(ids, capture=[2]))
    assert list(loaded.adapter.layers(loaded.model)) == layers
    assert not any(layer._forward_pre_hooks for layer in layers)


def test_clean_pass_final_hidden_gives_the_models_logits(loaded, ids):
    splice = Splice(loaded.model, loaded.adapter, {HookPoint(1): ReluSAE(32, 8)})
    run = splice.clean(ids)
    with torch.no_grad():
        torch.testing.assert_close(splice.logits(run.final_hidden), loaded.model(ids).logits)
