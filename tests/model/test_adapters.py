"""Every model adapter, and the generic fallback, against Hugging Face's own forward pass.

For each family: an identity SAE spliced at any residual-stream position leaves the logits
unchanged, the hooked activation is HF's ``output_hidden_states`` there, and a spliced pass that
starts from the clean pass's cached activation (skipping the layers before it, which must keep
rotary tables and masks intact) equals the full spliced pass.
"""

import pytest
import torch

from sae_kit.architectures.relu import ReluSAE
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.splice import ModelRunner, Splice
from tests.helpers import identity_sae

pytestmark = pytest.mark.slow  # builds a tiny model of every family

ADAPTERS = {
    "gpt2": "sae_kit_gpt2:GPT2Adapter",
    "gpt_neox": "sae_kit_pythia:GPTNeoXAdapter",
    "llama": "sae_kit_llama:LlamaAdapter",
    "opt": "generic (layers: model.decoder.layers, unembedding: lm_head)",
    "qwen2": "generic (layers: model.layers, unembedding: lm_head)",
    "bloom": "generic (layers: transformer.h, unembedding: lm_head)",
}
POSITIONS = [0, 1, 2, 3]  # resid_pre of layers 0-2 and resid_post of the last layer


def _hook_point(position: int, n_layers: int) -> HookPoint:
    if position < n_layers:
        return HookPoint(position, "resid_pre")
    return HookPoint(n_layers - 1, "resid_post")


@pytest.fixture(scope="module", params=list(ADAPTERS))
def family(request):
    return request.param


def test_the_expected_adapter_runs_each_family(family, loaded):
    assert loaded.model.config.model_type == family
    assert loaded.adapter.describe(loaded.model) == ADAPTERS[family]
    assert loaded.n_layers == 3 and loaded.d_model == 32


@pytest.mark.parametrize("position", POSITIONS)
def test_identity_sae_leaves_logits_unchanged(loaded, ids, reference, position):
    hp = _hook_point(position, loaded.n_layers)
    splice = Splice(loaded.model, loaded.adapter, {hp: identity_sae(32, 8)})
    with torch.no_grad():
        spliced = splice.spliced(ids)
        logits = splice.logits(spliced.final_hidden)
    assert hp in spliced.sae_outputs  # the SAE really ran in the pass
    assert (logits - reference.logits).abs().max().item() < 1e-5


@pytest.mark.parametrize("position", POSITIONS)
def test_hooked_activation_equals_hf_hidden_states(loaded, ids, reference, position):
    run = ModelRunner(loaded.model, loaded.adapter).run(ids, capture=[position],
                                                        final_hidden=False)
    got = run.acts[position]
    if position == loaded.n_layers:  # HF's last hidden state is after the final norm
        got = loaded.adapter.final_norm(loaded.model)(got)
    torch.testing.assert_close(got, reference.hidden_states[position], atol=1e-6, rtol=0)


@pytest.mark.parametrize("position", POSITIONS)
def test_spliced_pass_from_cached_activation_equals_full_pass(loaded, ids, position):
    n = loaded.n_layers
    torch.manual_seed(0)
    # A real (lossy) SAE at `position` and, where there is room, a second one further on.
    points = sorted({_hook_point(position, n), _hook_point(min(position + 2, n), n)})
    saes = {hp: ReluSAE(32, 64) for hp in points}
    splice = Splice(loaded.model, loaded.adapter, saes)
    clean = splice.clean(ids, capture=[position])
    with torch.no_grad():
        fast = splice.spliced(ids, capture=[n], clean=clean)
        full = splice.spliced(ids, capture=[n])
    torch.testing.assert_close(fast.final_hidden, full.final_hidden, atol=1e-6, rtol=0)
    torch.testing.assert_close(fast.acts[n], full.acts[n], atol=1e-6, rtol=0)
    for hp in saes:
        torch.testing.assert_close(fast.sae_outputs[hp].codes, full.sae_outputs[hp].codes)
    # The lossy SAEs changed the output, so the equality above is not trivially clean = clean.
    assert (full.final_hidden - clean.final_hidden).abs().max() > 1e-3


def test_an_adapter_that_does_not_fit_the_model_is_one_clear_line():
    from sae_kit_gpt2 import GPT2Adapter

    from sae_kit.errors import SaeKitError
    from tests.tiny_models import build

    with pytest.raises(SaeKitError) as info:
        GPT2Adapter().check(build("llama"))
    message = str(info.value)
    assert message.startswith("model adapter sae_kit_gpt2:GPT2Adapter does not fit this 'llama'")
    assert "no attribute 'transformer'" in message and "\n" not in message
