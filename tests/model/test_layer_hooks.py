"""Hook points inside decoder layers - attn_out, mlp_in, mlp_out, any module path - per family.

Each captured activation is checked against the same quantity computed independently from
Hugging Face's own ``output_hidden_states`` and the layer's submodules called by hand (the
arithmetic names each family's modules: the test may, the core may not). Splicing an identity
SAE there leaves the logits unchanged; splicing a lossy one changes only what follows it -
including, in Pythia's parallel layers, *not* the MLP of the same layer when attention changes.
"""

import pytest
import torch

from sae_kit.architectures.relu import ReluSAE
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import load_model
from sae_kit.model.splice import ModelRunner, Splice
from tests.helpers import identity_sae

pytestmark = pytest.mark.slow  # builds a tiny model of several families

LAYER = 1  # a middle layer of 3: HF's hidden_states[LAYER + 1] is not yet final-normed
KINDS = ["attn_out", "mlp_in", "mlp_out"]
MLP_IN_NORM = {"gpt2": "ln_2", "gpt_neox": "post_attention_layernorm",
               "llama": "post_attention_layernorm", "qwen2": "post_attention_layernorm"}
PARALLEL = {"gpt_neox"}  # the MLP reads the layer's input, not input + attention


@pytest.fixture(scope="module", params=list(MLP_IN_NORM))
def family(request):
    return request.param


def _capture(loaded, ids, hook_points):
    run = ModelRunner(loaded.model, loaded.adapter).run(
        ids, capture=[hp.site for hp in hook_points], final_hidden=False)
    return [run.acts[hp.site] for hp in hook_points]


def test_captured_activations_equal_the_layer_computed_by_hand(family, loaded, ids, reference):
    attn, mlp_in, mlp_out = _capture(loaded, ids, [HookPoint(LAYER, k) for k in KINDS])
    layer = loaded.adapter.layers(loaded.model)[LAYER]
    h, h_next = reference.hidden_states[LAYER], reference.hidden_states[LAYER + 1]
    with torch.no_grad():
        normed = getattr(layer, MLP_IN_NORM[family])(h if family in PARALLEL else h + attn)
        by_hand = loaded.adapter.mlp(layer)(normed)
    torch.testing.assert_close(mlp_in, normed, atol=1e-6, rtol=0)
    torch.testing.assert_close(mlp_out, by_hand, atol=1e-6, rtol=0)
    # The layer's output is its input plus both blocks: this pins the attention output too.
    torch.testing.assert_close(h + attn + mlp_out, h_next, atol=1e-5, rtol=0)
    assert attn.abs().max() > 1e-3 and mlp_out.abs().max() > 1e-3  # neither is trivially zero


def test_gpt2_attention_output_equals_the_attention_called_by_hand(tiny_model_dir, ids):
    loaded = load_model(str(tiny_model_dir("gpt2")))
    (attn,) = _capture(loaded, ids, [HookPoint(LAYER, "attn_out")])
    block = loaded.model.transformer.h[LAYER]
    with torch.no_grad():
        h = loaded.model(ids, output_hidden_states=True).hidden_states[LAYER]
        by_hand = block.attn(block.ln_1(h))[0]
    torch.testing.assert_close(attn, by_hand, atol=1e-6, rtol=0)


def test_a_module_path_reads_that_modules_output(loaded, ids):
    mlp = loaded.adapter.mlp(loaded.adapter.layers(loaded.model)[LAYER])
    names = {m: n for n, m in loaded.model.named_modules()}
    first = next(c for c in mlp.children() if hasattr(c, "weight"))  # c_fc / up_proj / ...
    path = HookPoint.parse(names[first])
    assert path.kind == "module" and path.layer == LAYER
    got, mlp_in = _capture(loaded, ids, [path, HookPoint(LAYER, "mlp_in")])
    with torch.no_grad():
        torch.testing.assert_close(got, first(mlp_in), atol=1e-6, rtol=0)
    assert loaded.width_at(path) == got.shape[-1] in (64, 128)  # the MLP's hidden width


@pytest.mark.parametrize("kind", KINDS)
def test_identity_sae_inside_a_layer_leaves_logits_unchanged(loaded, ids, reference, kind):
    hp = HookPoint(LAYER, kind)
    splice = Splice(loaded.model, loaded.adapter, {hp: identity_sae(32, 8)})
    with torch.no_grad():
        spliced = splice.spliced(ids, clean=splice.clean(ids, capture=[splice.first_position]))
        logits = splice.logits(spliced.final_hidden)
    assert hp in spliced.sae_outputs
    assert (logits - reference.logits).abs().max().item() < 1e-5


@pytest.mark.parametrize("kind", ["attn_out", "mlp_out"])
def test_splicing_changes_only_what_follows(family, loaded, ids, kind):
    torch.manual_seed(0)
    hp = HookPoint(LAYER, kind)
    splice = Splice(loaded.model, loaded.adapter, {hp: ReluSAE(32, 64)})
    watch = [HookPoint(LAYER, k) for k in KINDS]
    sites = [LAYER, *[w.site for w in watch], LAYER + 1, LAYER + 2]
    clean = splice.clean(ids, capture=sites)
    with torch.no_grad():
        spliced = splice.spliced(ids, capture=sites, clean=clean)
        full = splice.spliced(ids, capture=sites)  # no cached start: every layer runs
    changed = {str(s): not torch.allclose(spliced.acts[s], clean.acts[s], atol=1e-6)
               for s in sites}
    attn_changes_mlp = kind == "attn_out" and family not in PARALLEL
    assert changed == {
        str(LAYER): False, str(HookPoint(LAYER, "attn_out")): False,  # captured before the SAE
        str(HookPoint(LAYER, "mlp_in")): attn_changes_mlp,
        str(HookPoint(LAYER, "mlp_out")): attn_changes_mlp,
        str(LAYER + 1): True, str(LAYER + 2): True,
    }
    torch.testing.assert_close(spliced.final_hidden, full.final_hidden, atol=1e-6, rtol=0)


def test_bad_hook_points_are_one_clear_line(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir("gpt2")))
    cases = {
        "blocks.1.hook_resid_mid": "unknown hook point kind hook_resid_mid",
        "transformer.h.1": "is not inside a decoder layer; this model's layers are transformer.h.0",
        "transformer.h.1.mlp.nope": "no module 'transformer.h.1.mlp.nope' in this model; layer 1 "
                                    "has transformer.h.1.ln_1",
        "transformer.h.7.mlp": "layer 7 is out of range",
        "blocks.1.hook_mlp": "unknown hook point kind hook_mlp",
        "transformer.wte": "'transformer.wte': that module is outside the decoder layers",
    }
    for name, start in cases.items():
        with pytest.raises(SaeKitError) as info:
            loaded.width_at(HookPoint.parse(name))
        assert start in str(info.value) and "\n" not in str(info.value), name


def test_the_generic_adapter_says_in_one_line_when_it_cannot_find_the_mlp(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir("opt")))  # OPT's layer has fc1/fc2, no MLP module
    assert loaded.width_at(HookPoint(LAYER, "attn_out")) == 32  # its self_attn is found
    with pytest.raises(SaeKitError) as info:
        loaded.width_at(HookPoint(LAYER, "mlp_out"))
    message = str(info.value)
    assert message.startswith("cannot tell where the mlp lives in layer OPTDecoderLayer")
    assert "fc1" in message and "give the module's path" in message and "\n" not in message
